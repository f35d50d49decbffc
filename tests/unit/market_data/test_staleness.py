"""Staleness state machine on a test clock: stale past the threshold, fresh again on data, frozen prices."""

import pytest

from services.market_data.staleness import StalenessTracker


def test_new_symbol_starts_stale_without_a_transition():
    t = StalenessTracker(stale_after_s=10)
    t.track("BTC/USDT", 0.0)
    assert t.evaluate(1.0) == [] and t.status("BTC/USDT") == "stale"


def test_update_makes_fresh_then_stale_after_threshold_then_fresh_again():
    t = StalenessTracker(stale_after_s=10)
    t.track("BTC/USDT", 0.0)
    t.on_update("BTC/USDT", 1.0, 100)
    [ch] = t.evaluate(1.5)
    assert (ch.status, ch.symbol) == ("fresh", "BTC/USDT")
    assert t.evaluate(11.0) == []  # exactly at the threshold: still fresh
    [ch] = t.evaluate(11.01)
    assert ch.status == "stale" and ch.age_s == pytest.approx(10.01) and "no update" in ch.reason
    assert t.evaluate(20.0) == []  # no repeated transition
    t.on_update("BTC/USDT", 21.0, 101)
    [ch] = t.evaluate(21.0)
    assert ch.status == "fresh"


def test_symbols_are_judged_independently():
    t = StalenessTracker(stale_after_s=5)
    for s in ("A/USDT", "B/USDT"):
        t.track(s, 0.0)
        t.on_update(s, 0.0, 1)
    t.evaluate(0.0)
    t.on_update("A/USDT", 4.0, 2)
    changes = t.evaluate(6.0)
    assert [(c.symbol, c.status) for c in changes] == [("B/USDT", "stale")]
    assert t.counts() == (1, 1)


def test_frozen_price_goes_stale_while_updates_keep_coming():
    t = StalenessTracker(stale_after_s=5, frozen_after_s=30)
    t.track("A/USDT", 0.0)
    for s in range(0, 31):
        t.on_update("A/USDT", float(s), 100)
        t.evaluate(float(s))
    t.on_update("A/USDT", 31.0, 100)
    [ch] = t.evaluate(31.0)
    assert ch.status == "stale" and ch.frozen and "frozen" in ch.reason
    t.on_update("A/USDT", 32.0, 100.5)
    [ch] = t.evaluate(32.0)
    assert ch.status == "fresh" and not ch.frozen


def test_frozen_detection_off_when_zero():
    t = StalenessTracker(stale_after_s=5, frozen_after_s=0)
    for s in range(100):
        t.on_update("A/USDT", float(s), 100)
    t.evaluate(99.0)
    assert t.status("A/USDT") == "fresh"


def test_snapshot_reports_every_symbol_with_its_age():
    t = StalenessTracker(stale_after_s=5)
    t.track("A/USDT", 0.0)
    t.on_update("B/USDT", 2.0, 1)
    t.evaluate(3.0)
    snap = {c.symbol: c for c in t.snapshot(3.0)}
    assert snap["A/USDT"].status == "stale" and snap["A/USDT"].age_s == 3.0
    assert snap["B/USDT"].status == "fresh" and snap["B/USDT"].age_s == 1.0


def test_untracked_symbol_disappears():
    t = StalenessTracker(stale_after_s=5)
    t.track("A/USDT", 0.0)
    t.untrack("A/USDT")
    assert t.symbols == [] and t.snapshot(1.0) == []


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.booleans(), st.integers(0, 2)), max_size=60))
def test_status_is_always_what_the_last_update_and_the_last_price_change_say(events):
    """Invariant after every evaluate: fresh <=> updated within stale_after_s and price moved within frozen_after_s."""
    t = StalenessTracker(stale_after_s=3, frozen_after_s=8)
    t.track("A/USDT", 0.0)
    now, last_update, last_move, price = 0.0, None, None, None
    for dt, update, p in events:
        now += dt
        if update:
            if p != price:
                price, last_move = p, now
            t.on_update("A/USDT", now, p)
            last_update = now
        t.evaluate(now)
        expect_fresh = last_update is not None and now - last_update <= 3 and now - last_move <= 8
        assert t.status("A/USDT") == ("fresh" if expect_fresh else "stale")
