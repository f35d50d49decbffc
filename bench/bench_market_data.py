"""market_data throughput, through a real embedded NATS, with the real service process publishing.

- md_synthetic_ticks_per_s: `python -m services.market_data` in synthetic mode over 200 symbols, unpaced
  (as fast as it can publish; candles on 1s/1m built as well), for a fixed number of steps; this process
  consumes every tick on `md.tick.*` and validates it against the `Tick` contract (what a subscriber such
  as signal pays). Figure = ticks consumed / (last - first arrival). `md_synthetic_loss_ticks` =
  published - consumed (published is exactly 200 x steps).
- md_synthetic_paced_20k_ticks_per_s: the same paced at the 20,000 ticks/s target, with its loss.
- md_replay_candles_per_s: the service replays `data/ohlcv/BTCUSDT-1h.csv` at speed 0 (as fast
  as possible) mapped onto 200 symbols (4 ticks + 1 candle per bar per symbol, plus 4h/1d candles built
  from them); candles consumed per second over a window (`md_replay_ticks_per_s` alongside).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import yaml

from bnml.embedded import EmbeddedNats
from libs.common.contracts import Candle, Tick

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = 200
TARGET_TICKS_PER_S = 20_000


class Consumer:
    """Counts and validates everything on md.tick.* / md.candle.*.* (contract-checked like Bus.subscribe)."""

    def __init__(self) -> None:
        self.ticks = self.candles = self.invalid = 0
        self.first = self.last = 0.0
        self.first_candle = self.last_candle = 0.0

    async def attach(self, url: str) -> nats.NATS:
        async def quiet(exc: Exception) -> None:  # the service stopping is not an error here
            return None

        nc = await nats.connect(url, pending_size=256 * 1024 * 1024, error_cb=quiet)

        async def on_tick(msg) -> None:
            try:
                Tick.model_validate_json(msg.data)
            except Exception:
                self.invalid += 1
            now = time.perf_counter()
            if not self.ticks:
                self.first = now
            self.last = now
            self.ticks += 1

        async def on_candle(msg) -> None:
            try:
                Candle.model_validate_json(msg.data)
            except Exception:
                self.invalid += 1
            now = time.perf_counter()
            if not self.candles:
                self.first_candle = now
            self.last_candle = now
            self.candles += 1

        limits = {"pending_msgs_limit": 5_000_000, "pending_bytes_limit": 1 << 30}
        await nc.subscribe("md.tick.*", cb=on_tick, **limits)
        await nc.subscribe("md.candle.*.*", cb=on_candle, **limits)
        await nc.flush()
        return nc


def _start_service(tmp: Path, url: str, overrides: dict) -> subprocess.Popen:
    cfg = {"mode": "paper", "market_data": {"metrics_port": 0, "status_interval_s": 5}, **overrides}
    cfg["market_data"] = {**{"metrics_port": 0}, **overrides.get("market_data", {})}
    path = tmp / "bot.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
    env.update(
        NATS_URL=url,
        BNML_CONFIG=str(path),
        BNML_LOG_FORMAT="json",
        BNML_LOG_LEVEL="WARNING",
        BNML_MARKET_DATA__METRICS_PORT="0",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.market_data"],
        cwd=ROOT,
        env=env,
        stdout=open(tmp / "market_data.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _wait_quiet(c: Consumer, attr: str, quiet_s: float = 1.0, timeout: float = 120.0) -> None:
    """Until the count stops growing (the consumer drained what was sent)."""
    deadline = time.monotonic() + timeout
    last, since = getattr(c, attr), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = getattr(c, attr)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s and now > 0:
            return


async def _synthetic(
    url: str, tmp: Path, steps: int, ticks_per_s_per_symbol: float, quiet_s: float = 2.0
) -> tuple[float, int, int]:
    c = Consumer()
    nc = await c.attach(url)
    proc = _start_service(
        tmp,
        url,
        {
            "paper_market_data_mode": "synthetic",
            "market_data": {
                "synthetic": {
                    "symbols_count": SYMBOLS,
                    "seed": 1,
                    "ticks_per_s": ticks_per_s_per_symbol,
                    "max_steps": steps,
                }
            },
        },
    )
    try:
        await _wait_quiet(c, "ticks", quiet_s=quiet_s, timeout=60 + steps * SYMBOLS / 5_000)
    finally:
        _stop(proc)
        await nc.close()
    published = steps * SYMBOLS
    rate = (c.ticks - 1) / (c.last - c.first) if c.ticks > 1 and c.last > c.first else 0.0
    return rate, published - c.ticks, c.invalid


async def _replay(url: str, tmp: Path, window_s: float) -> tuple[float, float]:
    c = Consumer()
    nc = await c.attach(url)
    syms = [f"SYN{i:03d}/USDT" for i in range(1, SYMBOLS + 1)]
    proc = _start_service(
        tmp,
        url,
        {
            "paper_market_data_mode": "replay",
            "market_data": {"candle_timeframes": ["4h", "1d"], "replay": {"symbols": syms, "speed": 0}},
        },
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # noqa: ASYNC110 - polling a counter the callbacks bump
            if c.candles:
                break
            await asyncio.sleep(0.05)
        t0, k0, n0 = time.perf_counter(), c.candles, c.ticks
        await asyncio.sleep(window_s)
        t1, k1, n1 = time.perf_counter(), c.candles, c.ticks
    finally:
        _stop(proc)
        await nc.close()
    return (k1 - k0) / (t1 - t0), (n1 - n0) / (t1 - t0)


async def _main(quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bnml-bench-md-") as d:
        tmp = Path(d)
        server = EmbeddedNats(tmp / "nats").start()
        try:
            steps = 200 if quick else 1_500  # x 200 symbols
            flat, loss, invalid = await _synthetic(
                server.url, tmp, steps, 1_000_000 / SYMBOLS, quiet_s=1.0 if quick else 2.0
            )
            out = {
                "md_synthetic_ticks_per_s": flat,
                "md_synthetic_loss_ticks": float(loss),
                "md_synthetic_invalid_ticks": float(invalid),
            }
            if not quick:
                paced, paced_loss, _ = await _synthetic(server.url, tmp, steps, TARGET_TICKS_PER_S / SYMBOLS)
                out.update(
                    md_synthetic_paced_20k_ticks_per_s=paced,
                    md_synthetic_paced_20k_loss_ticks=float(paced_loss),
                )
            candles, ticks = await _replay(server.url, tmp, 3.0 if quick else 15.0)
            out.update(md_replay_candles_per_s=candles, md_replay_ticks_per_s=ticks)
            return out
        finally:
            server.stop()


def run(quick: bool = False) -> dict[str, float]:
    return asyncio.run(_main(quick))


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
