"""The backtest's fast paths change no result: ticks before a close folded into what they leave (while nothing
rests on the paper book) and risk's quiet evaluation, against every tick through every core and every
breaker at every close, on the real BTCUSDT 1h bars, with market and with resting limit orders."""

from __future__ import annotations

import pytest

from backtest.engine import Backtest
from backtest.run import apply_overrides
from tests.unit.backtest.test_engine import _orders, _record, _series


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        # limits at the last price: they rest on the paper book and fill as makers on later ticks
        ["execution.order_type=limit", "risk.limit_slippage_bps=0", "execution.limit_order_ttl_s=7200"],
    ],
)
def test_folded_ticks_and_the_quiet_path_record_exactly_the_full_run(btc_model, btc_1h, markets, overrides):
    settings, model = btc_model
    settings = apply_overrides(settings, overrides)
    fast_bt = Backtest(settings, _series(btc_1h), model, markets)
    slow_bt = Backtest(settings, _series(btc_1h), model, markets)
    slow_bt.fold_ticks = False
    slow_bt.risk.quiet_path = False
    quiet = {"n": 0}
    still = fast_bt.risk._quiet_still

    def counted(now):
        ok = still(now)
        quiet["n"] += ok
        return ok

    fast_bt.risk._quiet_still = counted  # type: ignore[method-assign]
    fast, slow = fast_bt.run(), slow_bt.run()
    assert _orders(fast) and fast.fills and fast.breaker_events  # something to compare
    assert _record(fast) == _record(slow)
    # positive controls: both fast paths were taken, and not always
    assert 0 < fast_bt.folded < fast.bars and slow_bt.folded == 0
    assert quiet["n"] > 0
    if overrides:
        assert any(f["is_maker"] for f in fast.fills)  # limits rested on the book (ticks not folded then)
