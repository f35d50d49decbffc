"""Ingest over 1,000 symbols with 1, 2 and 4 signal shards (`signal.shard {index, count}`, libs/common/shard.py).

One market_data process (synthetic, 1,000 symbols in slices of ~50 spread over each step, a fixed number of
steps so what it sent is final) and N
signal processes, each owning its part of the universe, in measurement mode (a BUY/SELL every Nth tick it
receives, ~50 decisions/s in all). For each N, rates go up until a step loses a tick, misses a signal lag
p99 of 50 ms, or market_data cannot send at 95 % of the rate; the highest passing step is
`shards_<N>_max_ticks_per_s`.

- loss: ticks market_data published minus the sum over the shards of `bnml_signal_ticks_received_total`
  (each shard counts only the ticks it owns, so the sum must equal what was sent: no tick lost, none taken
  twice);
- signal lag: a signal's arrival at this process minus its tick's event time;
- CPU: each process's CPU seconds over the step (psutil), also per tick (`_us_per_tick`): the per-message
  costs docs/scaling.md is built on. Every shard still receives every tick from NATS and drops the ones it
  does not own by subject before decoding them; `shards_<N>_signal_cpu_us_per_tick` (summed over the
  shards) shows what that costs.

The bus is one embedded NATS server per step; `BNML_BENCH_NATS_URL` points every step at an existing server
instead (a cluster, say). On a 2-core machine the shards, market_data and NATS compete for the same two
cores: the figures say what this machine allows, not what N machines would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
import psutil
import yaml

from bench.stack import settle, source_finished, wait_heartbeat
from bnml.embedded import EmbeddedNats

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = 1000
SHARD_COUNTS = (1, 2, 4)
RATES = (2_000, 5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 150_000)
RATE_REACHED = 0.95
LAG_P99_MS = 50.0
# market_data sends each step in slices spread over its period (`synthetic.slices_per_step`), ~50 ticks a
# slice: a real feed's 1,000 symbols do not tick in one burst, and a burst's last tick would wait for the
# 999 before it (that wait is the source's, not signal's: the first run of this bench measured it).
SLICES = 20


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(q / 100 * (len(values) - 1)))))]


def _config(path: Path, models: Path, rate: int, seconds: float) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "bot.yaml").read_text())
    per_symbol = rate / SYMBOLS
    cfg["market_data"]["synthetic"].update(
        symbols_count=SYMBOLS,
        ticks_per_s=per_symbol,
        max_steps=max(1, int(per_symbol * (seconds + 2))),
        slices_per_step=SLICES,
    )
    cfg["signal"]["every_nth_tick"] = max(1, int(rate // 50))  # ~50 decisions/s in all (lag samples)
    cfg["signal"]["models_dir"] = str(models)
    cfg["signal"]["train"].update(
        synthetic_bars=3000, folds=2
    )  # the bootstrap model: measurement mode skips it
    cfg.setdefault("storage", {})["artifacts_dir"] = str(path.parent / "artifacts")
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(nats_url: str, config: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
    env.update(
        NATS_URL=nats_url,
        BNML_CONFIG=str(config),
        BNML_LOG_FORMAT="json",
        BNML_LOG_LEVEL="INFO",
        BNML_SIGNAL__METRICS_PORT="0",
        BNML_MARKET_DATA__METRICS_PORT="0",
        **extra,
    )
    return env


def _start(name: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT
        )


def _scrape(port: int, metric: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric) and line[len(metric)] in " {"
    )


async def _signal_lags(nats_url: str, seconds: float, warmup_s: float) -> list[float]:
    from libs.common.contracts import Signal, utcnow

    nc = await nats.connect(servers=nats_url.split(","))  # one URL, or a cluster's list
    lags: list[float] = []
    t0 = time.monotonic()

    async def on_signal(msg) -> None:
        if time.monotonic() - t0 < warmup_s:
            return
        sig = Signal.model_validate_json(msg.data)
        if sig.tick_ts is not None:
            lags.append((utcnow() - sig.tick_ts).total_seconds() * 1000)

    await nc.subscribe("signal.*", cb=on_signal)
    await asyncio.sleep(warmup_s + seconds)
    await nc.close()
    return lags


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def step(
    tmp: Path, models: Path, shards: int, rate: int, seconds: float, nats_url: str | None
) -> dict[str, float]:
    d = tmp / f"s{shards}-{rate}"
    d.mkdir()
    ns = None if nats_url else EmbeddedNats(d / "nats").start()
    url = nats_url or ns.url  # type: ignore[union-attr]
    cfg = _config(d / "bench.yaml", models, rate, seconds)
    procs: dict[str, subprocess.Popen] = {}
    try:
        ports = {}
        for i in range(shards):
            name = f"signal-{i}"
            since = time.time()
            procs[name] = _start(
                "signal",
                d / f"{name}.log",
                _env(
                    url, cfg, {"BNML_SIGNAL__SHARD__INDEX": str(i), "BNML_SIGNAL__SHARD__COUNT": str(shards)}
                ),
            )
            # started, and where it serves /metrics: its first heartbeat (of this shard), from the bus
            hb = wait_heartbeat(
                url,
                "signal",
                since,
                where=lambda hb, i=i: (hb.get("shard") or {}).get("index") == i,
                proc=procs[name],
                log=d / f"{name}.log",
                timeout=120,
            )
            ports[name] = hb["metrics_port"]
        since = time.time()
        procs["market_data"] = _start("market_data", d / "market_data.log", _env(url, cfg, {}))
        wait_heartbeat(url, "market_data", since, proc=procs["market_data"], log=d / "market_data.log")
        watched = {n: psutil.Process(p.pid) for n, p in procs.items()}
        if ns is not None:
            watched["nats"] = psutil.Process(ns.proc.pid)
        cpu0 = {n: _cpu_s(w) for n, w in watched.items()}
        t0 = time.monotonic()
        lags = asyncio.run(_signal_lags(url, seconds, warmup_s=2))
        published, elapsed_s, _ = source_finished(
            url, since, proc=procs["market_data"], log=d / "market_data.log"
        )
        # the shards together have every tick sent (or the loss is what never came after 5 s)
        settle(lambda: sum(_scrape(ports[n], "bnml_signal_ticks_received_total") for n in ports), published)
        wall = time.monotonic() - t0
        cpu = {n: _cpu_s(w) - cpu0[n] for n, w in watched.items()}
        received = {n: _scrape(ports[n], "bnml_signal_ticks_received_total") for n in ports}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if ns is not None:
            ns.stop()
    achieved = published / elapsed_s if elapsed_s else float("nan")
    got = sum(received.values())
    sig_cpu = sum(v for n, v in cpu.items() if n.startswith("signal"))
    tag = f"shards_{shards}_{rate}"
    out = {
        f"{tag}_loss": max(0.0, published - got),
        f"{tag}_extra": max(0.0, got - published),
        f"{tag}_signal_lag_p99_ms": percentile(lags, 99),
        f"{tag}_signal_lag_p50_ms": percentile(lags, 50),
        f"{tag}_achieved_ticks_per_s": achieved,
        f"{tag}_signal_cpu_pct": 100 * sig_cpu / wall,
        f"{tag}_md_cpu_pct": 100 * cpu["market_data"] / wall,
        f"{tag}_signal_cpu_us_per_tick": 1e6 * sig_cpu / max(published, 1),
        f"{tag}_md_cpu_us_per_tick": 1e6 * cpu["market_data"] / max(published, 1),
    }
    if "nats" in cpu:
        out[f"{tag}_nats_cpu_pct"] = 100 * cpu["nats"] / wall
    print(
        f"   {shards} shard(s) at {rate:,}/s: published {published:.0f} at {achieved:,.0f}/s, received "
        f"{got:.0f} ({', '.join(f'{n} {v:.0f}' for n, v in received.items())}), lag p50 / p99 "
        f"{out[f'{tag}_signal_lag_p50_ms']:.1f} / {out[f'{tag}_signal_lag_p99_ms']:.1f} ms, cpu % "
        f"{ {n: round(100 * v / wall) for n, v in cpu.items()} }",
        flush=True,
    )
    return out


def risk_evaluate(symbols: int, rounds: int = 50) -> float:
    """ms for one `RiskEngine.evaluate` (run before every decision and four times a second) with `symbols`
    symbols priced: the per-symbol breakers (stale data, cooldown) are a loop over the universe. For
    docs/scaling.md: what one risk process pays per decision at 5,000 symbols."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from libs.common.markets import load_markets
    from libs.common.settings import RiskSettings
    from services.market_data.synthetic import synthetic_symbols
    from services.risk.core import RiskEngine

    t = datetime(2026, 1, 7, 12, tzinfo=UTC)
    syms = synthetic_symbols(["BTC/USDT", "ETH/USDT"], symbols)
    e = RiskEngine(RiskSettings(stale_after_s=10, heartbeat_timeout_s=10), load_markets(), syms, t)
    e.account_known = True
    for s in syms:  # every symbol priced before the first evaluation: no breaker in force
        e.on_tick(s, Decimal("1.5"), t, t)
    e.set_kill_switch(False, True, t)
    lat = []
    for i in range(rounds):
        now = t + timedelta(milliseconds=10 * (i + 1))
        t0 = time.perf_counter()
        e.evaluate(now)
        lat.append((time.perf_counter() - t0) * 1000)
    return sorted(lat)[len(lat) // 2]


def run(quick: bool = False, nats_url: str | None = None) -> dict[str, float]:
    nats_url = nats_url or os.environ.get("BNML_BENCH_NATS_URL") or None
    seconds = 2.0 if quick else 6.0
    rates = (2_000,) if quick else RATES
    out: dict[str, float] = {f"capacity_risk_evaluate_ms_{n}sym": risk_evaluate(n) for n in (200, 1000, 5000)}
    with tempfile.TemporaryDirectory(prefix="bnml-shards-") as t:
        tmp = Path(t)
        models = tmp / "models"  # the first signal trains the bootstrap model once; every step reuses it
        for shards in SHARD_COUNTS:
            best = 0
            for rate in rates:
                got = step(tmp, models, shards, rate, seconds, nats_url)
                out.update(got)
                tag = f"shards_{shards}_{rate}"
                ok = (
                    got[f"{tag}_loss"] == 0
                    and got[f"{tag}_extra"] == 0
                    and got[f"{tag}_signal_lag_p99_ms"] < LAG_P99_MS
                    and got[f"{tag}_achieved_ticks_per_s"] >= RATE_REACHED * rate
                )
                if not ok:
                    break
                best = rate
            out[f"shards_{shards}_max_ticks_per_s"] = float(best)
            if best:
                for k in ("signal_cpu_us_per_tick", "md_cpu_us_per_tick", "signal_lag_p99_ms"):
                    out[f"shards_{shards}_{k}"] = out[f"shards_{shards}_{best}_{k}"]
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.bench_shards")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--nats-url", default=None, help="an existing NATS server (default: an embedded one per step)"
    )
    a = ap.parse_args()
    for k, v in run(a.quick, a.nats_url).items():
        print(f"{k:<48} {v:,.4f}")
