"""market_data as a real process on real NATS: synthetic and replay sources, candles, status, universe."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest

from libs.common import subjects
from libs.common.contracts import Candle, MarketStatus, Tick, UniverseChanged
from tests.helpers import DATA, barrier, wait_heartbeat, wait_until
from tests.kit.builders import marker_candle, marker_tick

pytestmark = pytest.mark.integration


class Recorder:
    """Everything market_data publishes, validated against the contracts (Bus.subscribe does that)."""

    def __init__(self) -> None:
        self.ticks: dict[str, list[Tick]] = defaultdict(list)
        self.candles: dict[tuple[str, str], list[Candle]] = defaultdict(list)
        self.status: dict[str, list[MarketStatus]] = defaultdict(list)
        self.universe: list[UniverseChanged] = []

    async def attach(self, bus) -> Recorder:
        async def on_tick(t: Tick, subject: str) -> None:
            assert subject == subjects.tick(t.symbol)
            self.ticks[t.symbol].append(t)

        async def on_candle(c: Candle, subject: str) -> None:
            assert subject == subjects.candle(c.symbol, c.timeframe)
            self.candles[(c.symbol, c.timeframe)].append(c)

        async def on_status(s: MarketStatus, subject: str) -> None:
            self.status[s.symbol].append(s)

        async def on_universe(u: UniverseChanged, subject: str) -> None:
            self.universe.append(u)

        await bus.subscribe(subjects.ALL_TICKS, Tick, on_tick)
        await bus.subscribe(subjects.ALL_CANDLES, Candle, on_candle)
        await bus.subscribe(subjects.ALL_STATUS, MarketStatus, on_status)
        await bus.subscribe(subjects.universe(), UniverseChanged, on_universe)
        await bus.nc.flush()  # the subscriptions reach the server before a service is started (blocking)
        return self

    def n_ticks(self) -> int:
        return sum(len(v) for v in self.ticks.values())


def _content(t: Tick) -> tuple:
    return (t.symbol, t.bid, t.ask, t.last, t.volume, t.source, t.source_ts)


def _candle_content(c: Candle) -> tuple:
    return (c.symbol, c.timeframe, c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume)


async def _tick_barrier(bus, rec: Recorder) -> None:
    mk = marker_tick()
    await barrier(bus, subjects.tick(mk.symbol), mk, lambda: any(t.id == mk.id for t in rec.ticks[mk.symbol]))


async def _candle_barrier(bus, rec: Recorder) -> None:
    mk = marker_candle()
    await barrier(
        bus,
        subjects.candle(mk.symbol, mk.timeframe),
        mk,
        lambda: any(c.id == mk.id for c in rec.candles[(mk.symbol, mk.timeframe)]),
    )


SYNTH = {
    "paper_market_data_mode": "synthetic",
    "symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
    "market_data": {
        "synthetic": {"ticks_per_s": 40, "seed": 123},
        "candle_timeframes": ["1s", "5s"],
        "stale_after_s": 2,
        "status_interval_s": 1,
    },
}


async def test_synthetic_service_publishes_ticks_candles_status_and_universe(services, bus):
    rec = await Recorder().attach(bus)
    services.configure(SYNTH)
    md = services.start("market_data")
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    await wait_until(
        lambda: all(len(rec.candles[(s, "1s")]) >= 2 for s in syms),
        timeout=30,
        message="two closed 1s candles per symbol",
    )
    await wait_until(
        lambda: all(rec.status[s] and rec.status[s][-1].status == "fresh" for s in syms),
        timeout=15,
        message="every symbol published fresh",
    )
    assert rec.universe and rec.universe[0].symbols == syms
    for s in syms:
        ticks = rec.ticks[s]
        assert all(t.source == "synthetic" and t.bid < t.ask for t in ticks)
        for c in rec.candles[(s, "1s")]:
            assert c.closed and (c.close_time - c.open_time).total_seconds() == pytest.approx(0.999)
            inside = [t.last for t in ticks if c.open_time <= t.ts <= c.close_time]
            assert inside and c.low == min(inside) and c.high == max(inside)  # built from the ticks published
    assert md.alive


async def test_synthetic_ticks_through_the_bus_are_the_same_for_the_same_seed(services, bus):
    runs = []
    for _ in range(2):
        rec = await Recorder().attach(bus)
        services.configure(SYNTH)
        md = services.start("market_data")
        await wait_until(
            lambda rec=rec: all(len(rec.ticks[s]) >= 30 for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")),
            timeout=30,
            message="30 ticks per symbol",
        )
        md.stop()
        runs.append(
            {s: [_content(t) for t in rec.ticks[s][:30]] for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}
        )
        # late messages of this run land in this recorder, not the next
        await _tick_barrier(bus, rec)
        for sub in list(bus._subs):
            await sub.unsubscribe()
        bus._subs.clear()
    assert runs[0] == runs[1]


def _small_csv(tmp: Path, rows: int = 120) -> Path:
    lines = (DATA / "ohlcv" / "BTCUSDT-1h.csv").read_text().splitlines()
    out = tmp / "btc-small.csv"
    out.write_text("\n".join(lines[: rows + 1]) + "\n")
    return out


def _small_json(tmp: Path, rows: int = 200) -> Path:
    data = json.loads((DATA / "ohlcv" / "XRP_ETH-5m.json").read_text())
    out = tmp / "xrp-small.json"
    out.write_text(json.dumps(data[:rows]))
    return out


@pytest.mark.parametrize("kind", ["csv", "json"])
async def test_replay_through_the_bus_is_deterministic(services, bus, tmp_path, kind):
    path = _small_csv(tmp_path) if kind == "csv" else _small_json(tmp_path)
    n_bars = 120 if kind == "csv" else 200
    cfg = {
        "paper_market_data_mode": "replay",
        "market_data": {
            "replay": {"path": str(path), "symbols": ["BTC/USDT", "ETH/USDT"], "speed": 0},
            "candle_timeframes": ["4h", "1h", "1s"] if kind == "csv" else ["15m"],
        },
    }
    tf = "1h" if kind == "csv" else "5m"
    results = []
    for _ in range(2):
        rec = await Recorder().attach(bus)
        services.configure(cfg)
        md = services.start("market_data")
        await wait_until(
            lambda rec=rec: all(len(rec.candles[(s, tf)]) >= n_bars for s in ("BTC/USDT", "ETH/USDT")),
            timeout=60,
            message=f"{n_bars} replayed candles per symbol",
        )
        await wait_heartbeat(bus, "market_data", timeout=30, where=lambda hb: "replay finished" in hb.detail)
        await _tick_barrier(bus, rec)
        await _candle_barrier(bus, rec)
        md.stop()
        results.append(
            (
                {s: [_content(t) for t in v] for s, v in rec.ticks.items()},
                {k: [_candle_content(c) for c in v] for k, v in rec.candles.items()},
            )
        )
        for sub in list(bus._subs):
            await sub.unsubscribe()
        bus._subs.clear()
    (ticks_a, candles_a), (ticks_b, candles_b) = results
    assert ticks_a == ticks_b and candles_a == candles_b
    assert len(ticks_a["BTC/USDT"]) == 4 * n_bars
    assert [x[1:] for x in ticks_a["BTC/USDT"]] == [x[1:] for x in ticks_a["ETH/USDT"]]  # same path, mapped
    first = candles_a[("BTC/USDT", tf)][0]
    if kind == "csv":
        assert (str(first[4]), str(first[7])) == ("43820.01", "43694.48")  # the file's first bar, exactly
        assert len(candles_a[("BTC/USDT", "4h")]) == 30  # 120 hours from midnight: 30 complete 4h bars
    else:
        assert len(candles_a[("BTC/USDT", "15m")]) == (n_bars // 3)


async def test_missing_replay_file_refuses_to_start_naming_the_key(services, tmp_path):
    services.configure(
        {
            "paper_market_data_mode": "replay",
            "market_data": {"replay": {"path": str(tmp_path / "missing.csv")}},
        }
    )
    md = services.start("market_data", wait=False)
    await wait_until(lambda: not md.alive, timeout=30, message="market_data exits")
    assert md.proc.returncode == 2
    assert "market_data.replay.path" in md.logs()


async def test_publisher_survives_a_nats_restart_and_resumes(services, bus, nats_server):
    if nats_server is None:
        pytest.skip("needs this test's own NATS server (NATS_URL names an external one)")
    rec = await Recorder().attach(bus)
    services.configure(SYNTH)
    md = services.start("market_data")
    await wait_until(lambda: rec.n_ticks() >= 30, timeout=30, message="ticks before the restart")
    nats_server.stop()
    await asyncio.sleep(2.0)  # the service keeps running its source while NATS is away
    nats_server.start()
    await wait_until(lambda: bus.connected, timeout=30, message="test bus reconnected")
    await bus.nc.flush()
    n = rec.n_ticks()
    await wait_until(lambda: rec.n_ticks() >= n + 30, timeout=30, message="ticks after the restart")
    assert md.alive


async def test_a_finished_synthetic_source_reports_its_figures_in_the_heartbeat(services, bus):
    """What the benchmarks read on the bus instead of the log: once a finite synthetic source has sent its
    steps, every heartbeat's counters say so, with the ticks it sent and the time it took; not before."""
    rec = await Recorder().attach(bus)
    steps = 120  # three seconds at 40 steps a second: heartbeats (every second) come while it runs
    md = dict(SYNTH["market_data"], synthetic={"ticks_per_s": 40, "seed": 123, "max_steps": steps})
    services.configure({**SYNTH, "market_data": md})
    services.start("market_data")
    running = await wait_heartbeat(bus, "market_data", timeout=30)
    assert not running.counters.get("source_finished"), running.counters
    hb = await wait_heartbeat(
        bus, "market_data", where=lambda h: h.counters.get("source_finished"), timeout=30
    )
    symbols = SYNTH["symbols"]
    sent = len(symbols) * steps  # a tick of each symbol per step
    assert hb.counters["source_ticks"] == sent
    assert hb.counters["source_skipped_steps"] == 0
    # 120 steps at 40 a second: about three seconds, as the source itself measured them
    assert 2_500 <= hb.counters["source_elapsed_ms"] <= 30_000, hb.counters
    await _tick_barrier(bus, rec)
    assert sum(len(rec.ticks[s]) for s in symbols) == sent  # the ticks it counted are the ones on the bus
