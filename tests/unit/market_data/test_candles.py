"""Candle aggregation: UTC-aligned boundaries, gaps stay gaps, late ticks ignored, first partial bar dropped."""

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.market_data.candles import Bar, CandleAggregator, bucket_start, timeframe_ms, timeframe_of_ms

S = "BTC/USDT"
T0 = 1_700_000_000_000  # a whole minute (and second)


def test_timeframes_parse_and_name():
    assert timeframe_ms("1s") == 1000 and timeframe_ms("5s") == 5000 and timeframe_ms("1h") == 3_600_000
    assert (
        timeframe_of_ms(3_600_000) == "1h"
        and timeframe_of_ms(300_000) == "5m"
        and timeframe_of_ms(5000) == "5s"
    )
    with pytest.raises(ValueError):
        timeframe_ms("1x")
    with pytest.raises(ValueError):
        timeframe_ms("0m")


def test_week_buckets_start_on_monday():
    # 2024-01-03 (a Wednesday) belongs to the week starting Monday 2024-01-01 00:00 UTC
    assert bucket_start(1_704_240_000_000, timeframe_ms("1w")) == 1_704_067_200_000


def test_bar_boundaries_and_ohlcv():
    agg = CandleAggregator(["1s"])
    agg.on_tick(S, T0, D("10"), D("1"))
    agg.on_tick(S, T0 + 300, D("12"), D("2"))
    agg.on_tick(S, T0 + 600, D("9"), D("0.5"))
    closed = agg.on_tick(S, T0 + 1000, D("11"), D("1"))  # first ms of the next bar closes the previous
    assert len(closed) == 1
    b = closed[0]
    assert (b.open_time_ms, b.close_time_ms) == (T0, T0 + 999)
    assert (b.open, b.high, b.low, b.close, b.volume) == (D("10"), D("12"), D("9"), D("9"), D("3.5"))


def test_tick_on_the_last_millisecond_closes_the_bar_at_once():
    agg = CandleAggregator(["1s"])
    agg.on_tick(S, T0, D("10"))
    closed = agg.on_tick(S, T0 + 999, D("11"))
    assert [(b.open_time_ms, b.close) for b in closed] == [(T0, D("11"))]


def test_gap_produces_no_bar_for_the_empty_interval():
    agg = CandleAggregator(["1s"])
    agg.on_tick(S, T0, D("10"))
    closed = agg.on_tick(S, T0 + 5_200, D("13"))  # 4 empty seconds
    assert [b.open_time_ms for b in closed] == [T0]
    closed = agg.on_tick(S, T0 + 6_000, D("14"))
    assert [b.open_time_ms for b in closed] == [T0 + 5_000]


def test_close_due_publishes_bars_whose_interval_ended_without_new_ticks():
    agg = CandleAggregator(["1s", "5s"])
    agg.on_tick(S, T0, D("10"))
    assert agg.close_due(T0 + 999) == []
    bars = agg.close_due(T0 + 1000)
    assert [(b.timeframe, b.open_time_ms) for b in bars] == [("1s", T0)]
    bars = agg.close_due(T0 + 5000)
    assert [(b.timeframe, b.open_time_ms) for b in bars] == [("5s", T0)]


def test_late_tick_is_counted_and_ignored():
    agg = CandleAggregator(["1s"])
    agg.on_tick(S, T0, D("10"))
    agg.on_tick(S, T0 + 1000, D("11"))
    assert agg.on_tick(S, T0 + 500, D("99")) == []
    assert agg.late_updates == 1
    bar = agg.close_due(T0 + 2000)[0]
    assert bar.high == D("11")


def test_first_bar_started_mid_interval_is_dropped_as_partial():
    agg = CandleAggregator(["1s"])
    agg.on_tick(S, T0 + 400, D("10"))
    assert agg.on_tick(S, T0 + 1000, D("11")) == []
    assert agg.partial_dropped == 1
    assert [b.open_time_ms for b in agg.on_tick(S, T0 + 2000, D("12"))] == [T0 + 1000]


def test_symbols_are_aggregated_independently():
    agg = CandleAggregator(["1s"])
    agg.on_tick("BTC/USDT", T0, D("10"))
    agg.on_tick("ETH/USDT", T0, D("1"))
    closed = agg.on_tick("BTC/USDT", T0 + 1000, D("11"))
    assert [b.symbol for b in closed] == ["BTC/USDT"]


def test_finer_bars_build_coarser_bars():
    agg = CandleAggregator(["1h", "4h"])
    out = []
    for i in range(8):
        t = T0 - T0 % 14_400_000 + i * 3_600_000
        out += agg.on_bar(Bar(S, "1h", t, t + 3_599_999, D(10 + i), D(20 + i), D(5), D(11 + i), D(1)))
    assert [b.timeframe for b in out] == ["4h", "4h"]  # 1h series ignores 1h bars
    first = out[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (D(10), D(23), D(5), D(14), D(4))
    assert first.close_time_ms - first.open_time_ms == 14_399_999


@given(
    st.lists(
        st.tuples(st.integers(0, 20_000), st.integers(1, 1000), st.integers(0, 50)), min_size=1, max_size=200
    )
)
def test_every_tick_lands_in_exactly_one_published_or_open_bar(ticks):
    """Volume is conserved and every bar bounds its open/close, whatever the tick times."""
    agg = CandleAggregator(["1s"])
    bars, total, accepted = [], D(0), D(0)
    last_bucket = None
    for dt, price, vol in sorted(ticks):
        ts = T0 + dt
        bucket = ts // 1000
        total += vol
        if last_bucket is None or bucket >= last_bucket:
            accepted += vol
        last_bucket = bucket
        bars += agg.on_tick(S, ts, D(price), D(vol))
    bars += agg.close_due(T0 + 10**9)
    bars_all = bars
    for b in bars_all:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.close_time_ms - b.open_time_ms == 999
    assert len({b.open_time_ms for b in bars_all}) == len(bars_all)
    assert sum((b.volume for b in bars_all), D(0)) <= accepted == total
