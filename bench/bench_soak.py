"""Soak: 10 minutes of synthetic data at a high rate through the whole suite (issue 9).

Reports RSS per service at the start (after warm-up) and at the end, messages in and out of every
service (from their own /metrics), and the DLQ count. Target: no loss, RSS growth under 5 %.
`--quick` soaks for one minute only (a smoke check of the benchmark, not a soak).
"""

from __future__ import annotations

import time

import psutil
import yaml

from bench.bench_pipeline import scrape, start_suite, suite_config
from bench.stack import embedded_stack, settle, source_finished, wait_heartbeat

NAMES = ("ops_api", "risk", "execution", "signal", "market_data")
RATE = 4000  # ticks/s over 20 symbols


def _counts() -> dict[str, float]:
    return {
        "md_ticks_out": scrape("market_data", "bnml_market_data_ticks_published_total"),
        "signal_ticks_in": scrape("signal", "bnml_signal_ticks_received_total"),
        "signal_out": scrape("signal", "bnml_signal_signals_published_total"),
        "risk_verdicts_out": scrape("risk", "bnml_risk_verdicts_total"),
        "dlq": sum(scrape(n, f"bnml_{n}_dlq_messages_total") for n in NAMES),
    }


def run(quick: bool = False) -> dict[str, float]:
    soak_s = 60.0 if quick else 600.0
    with embedded_stack("bnml-soak-") as st:
        tmp = st.tmp
        procs = []
        try:
            cfg_path = suite_config(tmp / "soak.yaml", RATE, max(1, RATE // 20))
            cfg = yaml.safe_load(cfg_path.read_text())
            # the source stops by itself a little after the soak window, so its count is final
            cfg["market_data"]["synthetic"].update(
                symbols_count=20, ticks_per_s=RATE / 20, max_steps=int(RATE / 20 * (soak_s + 30))
            )
            cfg["ops_api"]["port"] = 0
            cfg["storage"] = {
                "artifacts_dir": str(tmp / "artifacts"),
                "backup": {"enabled": False, "dir": str(tmp / "backups")},
            }
            cfg_path.write_text(yaml.safe_dump(cfg))
            db = st.fresh_db("soak")
            since = time.time()
            procs = start_suite(tmp, st.ns.url, db, cfg_path, NAMES[:-1])
            for n, p in zip(NAMES[:-1], procs, strict=True):  # started: its first heartbeat, from the bus
                wait_heartbeat(st.ns.url, n, since, proc=p, log=tmp / f"{n}.log", timeout=90)
            since = time.time()
            procs += start_suite(tmp, st.ns.url, db, cfg_path, ("market_data",))
            wait_heartbeat(
                st.ns.url, "market_data", since, proc=procs[-1], log=tmp / "market_data.log", timeout=90
            )
            time.sleep(20)  # warm-up: caches, candles, model loaded
            watched = {n: psutil.Process(p.pid) for n, p in zip(NAMES, procs, strict=True)}
            rss0 = {n: w.memory_info().rss / (1 << 20) for n, w in watched.items()}
            c0 = _counts()
            time.sleep(soak_s)
            rss1 = {n: w.memory_info().rss / (1 << 20) for n, w in watched.items()}
            alive = all(p.poll() is None for p in procs)
            md_out, _, _ = source_finished(st.ns.url, since, proc=procs[-1], log=tmp / "market_data.log")
            settle(lambda: _counts()["signal_ticks_in"], md_out, timeout=10)  # signal has every tick sent
            c1 = _counts()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait(15)
    out: dict[str, float] = {"soak_seconds": soak_s, "soak_all_alive": 1.0 if alive else 0.0}
    for n in NAMES:
        out[f"soak_rss_start_mib_{n}"] = rss0[n]
        out[f"soak_rss_end_mib_{n}"] = rss1[n]
        out[f"soak_rss_growth_pct_{n}"] = (rss1[n] / rss0[n] - 1) * 100
    out["soak_rss_growth_pct_max"] = max(out[f"soak_rss_growth_pct_{n}"] for n in NAMES)
    out["soak_md_ticks_out"] = md_out
    out["soak_signal_ticks_in"] = c1["signal_ticks_in"]
    out["soak_tick_loss"] = max(0.0, md_out - c1["signal_ticks_in"])
    out["soak_signals_out"] = c1["signal_out"] - c0["signal_out"]
    out["soak_risk_verdicts_out"] = c1["risk_verdicts_out"] - c0["risk_verdicts_out"]
    out["soak_dlq"] = c1["dlq"]
    return out
