"""market_data's status pass pacing: which bars close on the clock, with what grace, under what label."""

from __future__ import annotations

from services.market_data.cadence import (
    CLOSE_GRACE_MS,
    close_before_ms,
    closes_on_time,
    source_label,
    status_period_s,
)


def test_a_replay_closes_its_bars_on_the_data_not_the_clock():
    assert not closes_on_time("replay")
    assert closes_on_time("synthetic") and closes_on_time("live")


def test_live_ticks_get_a_grace_before_their_bar_closes_and_synthetic_ones_none():
    assert close_before_ms(10_000, "live") == 10_000 - CLOSE_GRACE_MS > 0
    assert close_before_ms(10_000, "synthetic") == 10_000


def test_a_bar_closed_on_time_is_labelled_with_its_source():
    assert [source_label(m) for m in ("synthetic", "replay", "live")] == ["synthetic", "replay", "binance"]


def test_staleness_is_seen_within_a_quarter_of_its_threshold_and_at_least_every_quarter_second():
    assert status_period_s(0.4) == 0.1
    assert status_period_s(60.0) == 0.25
