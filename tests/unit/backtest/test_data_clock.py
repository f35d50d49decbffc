"""The data clock: the newest data time seen, never back; chosen only in replay mode when asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.common.clock import WALL, DataClock, ManualClock, clock_for
from libs.common.settings import BotSettings


def test_data_clock_follows_the_newest_data_time_and_never_goes_back():
    c = DataClock()
    assert not c.started and abs((c.now() - datetime.now(UTC)).total_seconds()) < 5  # wall until data arrives
    t = datetime(2022, 3, 1, tzinfo=UTC)
    c.observe(t)
    assert c.started and c.now() == t
    c.observe(t - timedelta(hours=1))  # a late message does not move it back
    assert c.now() == t
    c.observe(t + timedelta(minutes=20))
    assert c.now() == t + timedelta(minutes=20)


def test_wall_and_manual_clocks_ignore_data_times():
    m = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    m.observe(datetime(2030, 1, 1, tzinfo=UTC))
    assert m.now() == datetime(2026, 1, 1, tzinfo=UTC)
    WALL.observe(datetime(2000, 1, 1, tzinfo=UTC))
    assert WALL.now().year >= 2024


def test_clock_for_picks_the_data_clock_only_in_replay_with_the_switch():
    base = BotSettings()
    assert clock_for(base) is WALL
    md = base.market_data.model_copy(
        update={"replay": base.market_data.replay.model_copy(update={"data_clock": True})}
    )
    assert clock_for(base.model_copy(update={"market_data": md})) is WALL  # synthetic mode: wall clock
    replay = base.model_copy(update={"market_data": md, "paper_market_data_mode": "replay"})
    assert isinstance(clock_for(replay), DataClock)
