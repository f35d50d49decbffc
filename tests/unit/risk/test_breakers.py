"""Each breaker alone: pure functions of numbers and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.risk import breakers as B

UTC_Z = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    now=instants, zone=st.sampled_from([UTC_Z, PARIS, ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")])
)
def test_calendar_windows_contain_now_and_start_at_local_midnight_monday(now, zone):
    d0, d1 = B.day_window(now, zone)
    w0, w1 = B.week_window(now, zone)
    assert d0 <= now < d1 and w0 <= now < w1
    assert d0.astimezone(zone).hour == 0 and w0.astimezone(zone).weekday() == 0
    assert w0 <= d0 and d1 <= w1
    assert timedelta(hours=22) <= d1 - d0 <= timedelta(hours=26)  # DST days are 23 or 25 hours


def test_paris_day_starts_at_local_midnight_not_utc():
    now = datetime(2026, 7, 1, 21, 30, tzinfo=UTC)  # 23:30 in Paris (UTC+2)
    d0, d1 = B.day_window(now, PARIS)
    assert d0 == datetime(2026, 6, 30, 22, 0, tzinfo=UTC) and d1 == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    realized=st.decimals(min_value=-1000, max_value=1000, places=2),
    later=st.decimals(min_value=-1000, max_value=1000, places=2),
    minutes=st.integers(min_value=0, max_value=3 * 24 * 60),
)
def test_loss_budget_latches_until_the_window_ends_whatever_pnl_does(realized, later, minutes):
    now = datetime(2026, 1, 7, 10, tzinfo=UTC)
    _, end = B.day_window(now, UTC_Z)
    first = B.loss_budget("daily", realized, Decimal("200"), end, now, None)
    assert first.allowed == (realized > -200)
    if first.allowed:
        return
    assert first.until == end
    t = now + timedelta(minutes=minutes)
    again = B.loss_budget(
        "daily", later, Decimal("200"), B.day_window(t, UTC_Z)[1], t, B.Prev(now, first.until)
    )
    if t < end:
        assert not again.allowed  # a winning trade inside the window does not reopen it
    else:
        assert again.allowed == (later > -200)  # a new window starts from its own P&L


def test_drawdown_trips_at_the_limit():
    assert B.drawdown(Decimal("9000"), Decimal("10000"), 10.0, None).allowed is False
    assert B.drawdown(Decimal("9001"), Decimal("10000"), 10.0, None).allowed is True


def test_volatility_has_hysteresis_and_minimum_hold():
    t = datetime(2026, 1, 7, tzinfo=UTC)
    trip = B.volatility(3.0, 2.5, 1.5, 300, t, None)
    assert not trip.allowed and trip.until == t + timedelta(seconds=300)
    prev = B.Prev(t, trip.until)
    assert not B.volatility(1.0, 2.5, 1.5, 300, t + timedelta(seconds=299), prev).allowed  # minimum hold
    assert not B.volatility(
        2.0, 2.5, 1.5, 300, t + timedelta(seconds=301), prev
    ).allowed  # between clear and trip
    assert not B.volatility(None, 2.5, 1.5, 300, t + timedelta(seconds=301), prev).allowed  # unknown: stay
    assert B.volatility(1.4, 2.5, 1.5, 300, t + timedelta(seconds=301), prev).allowed
    assert B.volatility(2.0, 2.5, 1.5, 300, t, None).allowed  # below trip: never tripped


def test_stale_data_without_ticks_too_old_or_reported():
    t = datetime(2026, 1, 7, tzinfo=UTC)
    assert not B.stale_data(None, False, "", t, 10).allowed
    assert not B.stale_data(t - timedelta(seconds=11), False, "", t, 10).allowed
    assert not B.stale_data(t, True, "exchange down", t, 10).allowed
    assert B.stale_data(t - timedelta(seconds=9), False, "", t, 10).allowed


def test_heartbeat_has_a_start_up_grace_then_needs_a_beat():
    t = datetime(2026, 1, 7, tzinfo=UTC)
    assert B.heartbeat_missing("execution", None, t, t + timedelta(seconds=5), 10).allowed
    assert not B.heartbeat_missing("execution", None, t, t + timedelta(seconds=11), 10).allowed
    assert B.heartbeat_missing(
        "execution", t + timedelta(seconds=10), t, t + timedelta(seconds=11), 10
    ).allowed


def test_cooldown_and_loss_streak_expire():
    t = datetime(2026, 1, 7, tzinfo=UTC)
    assert not B.cooldown("loss", t, 60, t + timedelta(seconds=59)).allowed
    assert B.cooldown("loss", t, 60, t + timedelta(seconds=60)).allowed
    assert not B.loss_streak(4, 4, t, 3600, t + timedelta(seconds=1)).allowed
    assert B.loss_streak(3, 4, t, 3600, t).allowed
    assert B.loss_streak(4, 4, t, 3600, t + timedelta(seconds=3600)).allowed


def test_order_loop_trips_at_the_limit():
    assert B.order_loop(39, 40, 10).allowed and not B.order_loop(40, 40, 10).allowed
