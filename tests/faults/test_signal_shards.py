"""A signal shard killed: its symbols hold, no other symbol is affected, and they trade again when it returns.

Two signal instances (`signal.shard {index, count: 2}`) share the universe BTC/USDT, ETH/USDT, XRP/USDT by
`crc32(exchange symbol) % 2` (libs/common/shard.py): shard 1 owns BTC/USDT, shard 0 the other two. Market
data is synthetic, risk and execution run on paper, the ops API reports the owners. Orders are counted
where they arrive: the paper exchange's own record of every request (`paper_requests`), never through a
journal constraint. Mutant: make every instance own every symbol (`self._accept = None` in
services/signal/shell.py): both shards then claim every symbol in their heartbeats (the first check fails),
the status shows contested symbols, and with those checks taken out shard 0 keeps ordering BTC/USDT while
shard 1 is dead (7 requests in the window, where 0 are allowed).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import psycopg
import pytest

from libs.common import subjects
from libs.common.contracts import Heartbeat, RiskVerdict, Signal
from libs.common.shard import shard_of
from tests.helpers import VIEWER_TOKEN, ops_api_url, shard_env, wait_until

pytestmark = pytest.mark.faults

SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT"]
DEAD = "BTC/USDT"  # shard 1 of 2
LIVE = ["ETH/USDT", "XRP/USDT"]  # shard 0 of 2
GRACE_S = 3.0  # a signal made just before the kill may still be decided and sent (verdict_ttl_s 2 s)

CONFIG = {
    "symbols": SYMBOLS,
    "market_data": {"synthetic": {"ticks_per_s": 10}},
    # measurement mode: a BUY/SELL every 7th tick an instance receives (odd, so both of shard 0's symbols get
    # some): about 1.4 signals/s per symbol
    "signal": {"every_nth_tick": 7},
    "risk": {
        "cooldown_after_loss_s": 0,
        "cooldown_after_breaker_s": 0,
        "loss_streak_limit": 1000,
        "order_loop_trip_per_10s": 1000,
        "max_orders_per_10s": 49,
        "max_orders_per_10s_per_symbol": 49,
    },
    "execution": {"starting_balances": {"USDT": "1000000"}},
    "monitoring": {"heartbeat_timeout_s": 2.0},
}


def requests_by_symbol(database_url: str, after_id: int = 0) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*) FROM paper_requests WHERE id > %s GROUP BY symbol", (after_id,)
        ).fetchall()
    return {sym: n for sym, n in rows}


def last_request_id(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM paper_requests").fetchone()[0]


def status(url: str) -> dict:
    r = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}, timeout=5)
    r.raise_for_status()
    return r.json()


async def test_a_killed_signal_shard_holds_only_its_symbols_and_they_trade_again_when_it_returns(
    services, database_url, bus, tmp_path
):
    assert shard_of(DEAD, 2) == 1 and all(shard_of(s, 2) == 0 for s in LIVE)
    # a registry of the test's own; the first shard trains a small bootstrap model into it (measurement mode
    # decides without it), the second finds it there
    services.configure(
        {
            **CONFIG,
            "signal": {
                **CONFIG["signal"],
                "models_dir": str(tmp_path / "models"),
                "train": {"synthetic_bars": 3000, "folds": 2},
            },
        }
    )
    signals: list[tuple[float, Signal]] = []
    approved: list[tuple[float, RiskVerdict]] = []
    beats: dict[str, Heartbeat] = {}

    async def on_signal(sig: Signal, subject: str) -> None:
        if sig.side != "HOLD":
            signals.append((time.monotonic(), sig))

    async def on_verdict(v: RiskVerdict, subject: str) -> None:
        if v.approved:
            approved.append((time.monotonic(), v))

    async def on_beat(hb: Heartbeat, subject: str) -> None:
        beats[hb.instance] = hb

    await bus.subscribe(subjects.ALL_SIGNALS, Signal, on_signal)
    await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)
    await bus.subscribe(subjects.heartbeat("signal"), Heartbeat, on_beat)

    # started side by side (each takes seconds to import on a busy machine); shard 0 trains the model first
    first = [services.start(n, wait=False) for n in ("ops_api", "risk", "execution")]
    services.start("signal", env=shard_env("signal", 0, 2), label="signal-0", timeout=90)
    shard1 = services.start("signal", env=shard_env("signal", 1, 2), label="signal-1", wait=False)
    for p in (*first, shard1):
        p.wait_started(60)
    ops = first[0]
    services.start("market_data")
    url = ops_api_url(ops)

    # -- both shards trade, each on its own symbols --------------------------------------------------
    await wait_until(
        lambda: all(requests_by_symbol(database_url).get(s, 0) >= 2 for s in SYMBOLS),
        timeout=60,
        message="two paper order requests on every symbol",
    )
    owned = {
        (hb.shard.index, tuple(hb.shard.symbols)) for hb in beats.values() if hb.shard and hb.shard.symbols
    }
    assert owned == {(0, tuple(LIVE)), (1, (DEAD,))}, owned  # every symbol exactly one owner
    await wait_until(lambda: status(url)["shards"]["signal"]["ok"], timeout=10, message="status: shards ok")
    view = status(url)["shards"]["signal"]
    assert view["count"] == 2 and view["unowned"] == 0 and view["contested"] == 0 and view["symbols"] == 3

    # -- shard 1 killed: BTC/USDT holds, ETH/USDT and XRP/USDT keep trading ---------------------------
    shard1.kill()  # SIGKILL: no goodbye, no drain
    killed_at = time.monotonic()
    await asyncio.sleep(GRACE_S)  # the grace after which the dead shard's symbols may no longer be signalled
    mark, quiet_from = last_request_id(database_url), time.monotonic()
    await wait_until(
        lambda: all(requests_by_symbol(database_url, mark).get(s, 0) >= 2 for s in LIVE),
        timeout=30,
        message="the live shard's symbols keep getting orders (positive control)",
    )
    await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - quiet_from)))  # a window of 5 s at least
    during = requests_by_symbol(database_url, mark)
    assert during.get(DEAD, 0) == 0, f"{DEAD} was ordered while its shard was dead: {during}"
    assert not [s for t, s in signals if t > killed_at + GRACE_S and s.symbol == DEAD], (
        "dead shard's symbol signalled"
    )
    assert not [v for t, v in approved if t > quiet_from and v.symbol == DEAD], (
        "approved while its shard was dead"
    )
    assert [s for t, s in signals if t > quiet_from and s.symbol in LIVE], (
        "positive control: live shard signals"
    )
    view = status(url)["shards"]["signal"]
    assert not view["ok"] and view["missing_shards"] == [1]
    assert view["unowned"] == 1 and view["unowned_sample"] == [DEAD] and view["contested"] == 0

    # -- shard 1 back: BTC/USDT trades again ---------------------------------------------------------
    back_mark = last_request_id(database_url)
    services.start("signal", env=shard_env("signal", 1, 2), label="signal-1")
    await wait_until(
        lambda: requests_by_symbol(database_url, back_mark).get(DEAD, 0) >= 2,
        timeout=30,
        message=f"{DEAD} ordered again once its shard is back",
    )
    assert all(requests_by_symbol(database_url, back_mark).get(s, 0) >= 1 for s in LIVE)
    await wait_until(
        lambda: status(url)["shards"]["signal"]["ok"], timeout=10, message="status: shards ok again"
    )
    view = status(url)["shards"]["signal"]
    assert [(i["index"], i["status"]) for i in view["instances"]] == [(0, "ok"), (1, "ok")]
    # never two signals for one tick: one owner per symbol throughout
    tick_ids = [s.tick_id for _, s in signals]
    assert len(tick_ids) == len(set(tick_ids))
