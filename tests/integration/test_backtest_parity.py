"""Parity: a window of real BTCUSDT 1h bars replayed (onto BTC/USDT and ETH/USDT, each with its own exchange
filters, closing together) through the running suite (market_data in replay mode on
the data's clock, signal, risk, execution in paper mode, NATS, Postgres) and through the backtest with the
same config and model gives the same orders (symbol, side, quantity, limit) and the same fills and fees,
order by order. What parity covers and what it does not: docs/backtest.md."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from backtest.engine import Backtest, Series
from libs.common import ohlcv, subjects
from libs.common.contracts import Candle
from libs.common.markets import DEFAULT_MARKETS_PATH, Markets
from libs.common.settings import load_settings
from services.signal.registry import load_current, update_metadata
from services.signal.train import run_training
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data" / "ohlcv" / "BTCUSDT-1h.csv"
BARS = 55  # 25 of warm-up, then 30 decisions
SPEED = 6000.0
SYMBOLS = [
    "BTC/USDT",
    "ETH/USDT",
]  # 1h bars: a tick every 0.2 s of wall time, well above md.last's 100 ms conflation


def _window_file(tmp: Path, start: int) -> Path:
    raw = DATA.read_text().splitlines()
    path = tmp / "window.csv"
    path.write_text("\n".join([raw[0], *raw[1 + start : 1 + start + BARS]]) + "\n")
    return path


def _journal(url: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(url) as conn:
        orders = conn.execute(
            "SELECT symbol, side, quantity, price_limit, status FROM orders ORDER BY created_at"
        ).fetchall()
        fills = conn.execute("SELECT symbol, side, quantity, price, fee FROM fills ORDER BY id").fetchall()
    return orders, fills


def _norm(rows) -> list[tuple]:
    return [
        tuple(
            Decimal(str(v)).normalize()
            if isinstance(v, Decimal | int | float) and not isinstance(v, bool)
            else v
            for v in r
        )
        for r in rows
    ]


async def test_the_suite_and_the_backtest_make_the_same_orders_and_fills(
    services, database_url, bus, tmp_path
):
    models = tmp_path / "models"
    overrides = {
        "symbols": SYMBOLS,
        "paper_market_data_mode": "replay",
        "market_data": {
            "candle_timeframes": ["1h"],
            "stale_after_s": 3600,
            "replay": {"symbol": "BTC/USDT", "symbols": SYMBOLS, "speed": SPEED, "data_clock": True},
        },
        # parity is about the code, not the model: no edge gate, so that this model trades in a short window
        "signal": {"models_dir": str(models), "min_expected_edge_bps": None},
        # heartbeats are wall-clock facts (once a second), the breaker counts data time: not compared here
        "risk": {"heartbeat_services": []},
    }
    services.configure(overrides)
    settings = load_settings(services.config_path)
    train = settings.signal.train.model_copy(update={"data": str(DATA), "folds": 2})
    # the gate refuses this model (it has no edge); paper may serve it when forced (audited), which is what
    # the suite then loads as `current`
    path = run_training(
        settings, train=train, progress=lambda m: None, drift_replay=False, force_promote=True
    )
    # the one file is replayed as both symbols, so the bars it was evaluated on are those of both
    update_metadata(models, path.name, symbols=SYMBOLS)
    model = load_current(models)
    markets = Markets.load(DEFAULT_MARKETS_PATH)
    full = ohlcv.load(DATA, symbol="BTC/USDT")

    # the first window (from 2022) in which the model trades at least 6 times through the backtest
    start = None
    for s in range(5000, 9000, 150):
        series = [
            Series.from_ohlcv(
                full.between(int(full.frame["open_time"][s]), int(full.frame["open_time"][s + BARS - 1]) + 1),
                "BTC/USDT",
            )
        ]
        if len(Backtest(settings, series, model, markets).run().orders) >= 6:
            start = s
            break
    assert start is not None, "no window with trades: the model or its threshold changed"
    path = _window_file(tmp_path, start)
    overrides["market_data"]["replay"]["path"] = str(path)
    services.configure(overrides)
    settings = load_settings(services.config_path)

    data = ohlcv.load(path, symbol="BTC/USDT")
    series = [Series.from_ohlcv(data, sym) for sym in SYMBOLS]  # the same bars onto both, as the replay does
    rec = Backtest(settings, series, model, markets).run()
    want_orders = [(o["symbol"], o["side"], o["quantity"], o["limit"], "FILLED") for o in rec.orders]
    want_fills = [(f["symbol"], f["side"], f["quantity"], f["price"], f["fee"]) for f in rec.fills]
    assert len(want_orders) >= 6 and {o[0] for o in want_orders} == set(SYMBOLS)

    candles: list[Candle] = []

    async def on_candle(c: Candle, subject: str) -> None:
        candles.append(c)

    for sym in SYMBOLS:
        await bus.subscribe(subjects.candle(sym, "1h"), Candle, on_candle)
    for name in ("risk", "execution", "signal"):
        services.start(name)
    services.start("market_data")
    await wait_until(
        lambda: len(candles) >= BARS * len(SYMBOLS),
        timeout=BARS * 4 / SPEED * 3600 * 3 + 30,
        message=f"{BARS} replayed candles",
    )

    def settled() -> bool:
        orders, fills = _journal(database_url)
        return (
            len(orders) >= len(want_orders)
            and len(fills) >= len(want_fills)
            and all(o[4] in ("FILLED", "CANCELLED", "REJECTED") for o in orders)
        )

    with contextlib.suppress(AssertionError):  # compare either way: a difference shows as a diff below
        await wait_until(settled, timeout=20, message="every order of the backtest journaled and final")
    orders, fills = _journal(database_url)
    assert _norm(orders) == _norm(want_orders)
    assert _norm(fills) == _norm(want_fills)
    assert candles[0].ts.year == 2022  # the suite ran on the data's clock
