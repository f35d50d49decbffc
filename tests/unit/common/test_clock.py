from datetime import UTC, datetime, timedelta

import pytest

from libs.common.clock import ManualClock, WallClock


def test_manual_clock_moves_only_when_told_and_never_back():
    t0 = datetime(2022, 1, 1, tzinfo=UTC)
    c = ManualClock(t0)
    assert c.now() == t0 and c.monotonic() == 0
    c.advance(1.5)
    assert c.now() == t0 + timedelta(seconds=1.5) and c.monotonic() == 1.5
    with pytest.raises(ValueError):
        c.set(t0)


def test_manual_clock_needs_an_aware_start():
    with pytest.raises(ValueError):
        ManualClock(datetime(2022, 1, 1))


def test_wall_clock_is_aware_utc():
    assert WallClock().now().tzinfo is not None
