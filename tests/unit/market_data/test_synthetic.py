"""Synthetic market: seeded and reproducible, correlated, regime-switching, jumps, never a crossed book."""

import math
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from libs.common.settings.market_data import SyntheticSettings
from services.market_data.synthetic import SyntheticMarket, price_decimals, synthetic_symbols

SYMS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def _run(seed: int, steps: int, symbols=SYMS, params=None):
    m = SyntheticMarket(symbols, seed, params)
    return [[(q.symbol, q.bid, q.ask, q.last, q.volume) for q in m.step()] for _ in range(steps)]


def test_same_seed_gives_the_same_ticks():
    assert _run(7, 300) == _run(7, 300)


def test_different_seed_gives_different_ticks():
    assert _run(7, 50) != _run(8, 50)


def test_ticks_do_not_depend_on_the_time_passed_in():
    a, b = SyntheticMarket(SYMS, 3), SyntheticMarket(SYMS, 3)
    ta = [t for _ in range(20) for t in a.ticks(datetime(2020, 1, 1, tzinfo=UTC))]
    tb = [t for _ in range(20) for t in b.ticks(datetime.now(UTC))]
    assert [(t.symbol, t.bid, t.ask, t.last, t.volume) for t in ta] == [
        (t.symbol, t.bid, t.ask, t.last, t.volume) for t in tb
    ]


def test_generated_symbols_fill_up_to_the_count_after_the_configured_ones():
    syms = synthetic_symbols(SYMS, 200)
    assert len(syms) == 200 and syms[:3] == SYMS and len(set(syms)) == 200
    assert synthetic_symbols(SYMS, 0) == SYMS


def test_book_is_never_crossed_and_prices_positive_over_many_steps():
    m = SyntheticMarket(synthetic_symbols(SYMS, 50), 11, SyntheticSettings(jump_prob=0.01, jump_bps=500))
    for _ in range(500):
        for q in m.step():
            bid, ask, last = Decimal(q.bid), Decimal(q.ask), Decimal(q.last)
            assert 0 < bid < ask
            assert last in (bid, ask)
            assert Decimal(q.volume) >= 0


def _returns(m: SyntheticMarket, steps: int) -> np.ndarray:
    prices = np.array([[q.last_f for q in m.step()] for _ in range(steps)])
    return np.diff(np.log(prices), axis=0)


def test_returns_are_correlated_as_configured():
    m = SyntheticMarket(
        ["AAA/USDT", "BBB/USDT"],
        5,
        SyntheticSettings(correlation=0.8, jump_prob=0, spread_bps=0.01, regime_switch_prob=0),
    )
    r = _returns(m, 4000)
    corr = np.corrcoef(r[:, 0], r[:, 1])[0, 1]
    assert 0.6 < corr < 0.95
    m0 = SyntheticMarket(
        ["AAA/USDT", "BBB/USDT"],
        5,
        SyntheticSettings(correlation=0.0, jump_prob=0, spread_bps=0.01, regime_switch_prob=0),
    )
    r0 = _returns(m0, 4000)
    assert abs(np.corrcoef(r0[:, 0], r0[:, 1])[0, 1]) < 0.15


def test_volatility_regimes_switch_and_the_volatile_one_moves_more():
    m = SyntheticMarket(
        ["AAA/USDT"],
        9,
        SyntheticSettings(regime_switch_prob=0.01, volatile_multiplier=4, jump_prob=0, spread_bps=0.01),
    )
    regimes, moves, last = [], [], None
    for _ in range(6000):
        p = m.step()[0].last_f
        regimes.append(m.regime)
        if last is not None:
            moves.append(abs(math.log(p / last)))
        last = p
    regimes = np.array(regimes[1:])
    moves = np.array(moves)
    assert 0 < regimes.mean() < 1, "both regimes visited"
    assert moves[regimes == 1].mean() > 2 * moves[regimes == 0].mean()


def test_jumps_happen_when_enabled():
    params = SyntheticSettings(jump_prob=0.02, jump_bps=1000, regime_switch_prob=0, vol_bps_per_tick=1)
    m = SyntheticMarket(["AAA/USDT"], 1, params)
    r = np.abs(_returns(m, 2000))
    assert (r > 0.02).sum() >= 10  # ~40 jumps of ~10 % expected; plain noise is ~1 bp


@pytest.mark.parametrize("price,places", [(60000, 2), (3000, 2), (150, 3), (0.6, 6), (0.00001, 8)])
def test_price_decimals_follow_the_magnitude(price, places):
    assert price_decimals(price) == places
