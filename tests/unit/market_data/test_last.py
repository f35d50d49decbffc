"""md.last: each symbol's newest tick, at most once per interval, never more than about an interval behind."""

from __future__ import annotations

import asyncio

from libs.common.metrics import ServiceMetrics
from services.market_data.candles import CandleAggregator
from services.market_data.last import LastTicks
from services.market_data.publisher import Publisher
from services.market_data.staleness import StalenessTracker
from services.market_data.synthetic import SyntheticMarket


def test_a_quiet_symbol_forwards_every_tick_at_once():
    last = LastTicks(0.05)
    assert last.offer("A", b"1", 0.0) == b"1"
    assert last.offer("A", b"2", 0.06) == b"2"
    assert last.offer("B", b"x", 0.061) == b"x"  # symbols are independent
    assert last.due(1.0) == []


def test_a_busy_symbol_is_conflated_to_its_newest_tick_once_per_interval():
    last = LastTicks(0.05)
    assert last.offer("A", b"1", 0.000) == b"1"
    assert last.offer("A", b"2", 0.010) is None
    assert last.offer("A", b"3", 0.020) is None
    assert last.due(0.030) == []  # the interval has not passed
    assert last.due(0.050) == [("A", b"3")]  # only the newest, once
    assert last.due(0.200) == []
    assert last.offer("A", b"4", 0.060) is None  # 10 ms after the held one went out
    assert last.offer("A", b"5", 0.101) == b"5"  # an interval later: at once, the held one dropped
    assert last.due(1.0) == []


def test_forget_drops_a_symbol_that_left_the_universe():
    last = LastTicks(0.05)
    last.offer("A", b"1", 0.0)
    last.offer("A", b"2", 0.01)
    last.forget("A")
    assert last.due(1.0) == []
    assert last.offer("A", b"3", 0.02) == b"3"


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def is_kept(self, subject: str) -> bool:
        return False

    async def publish_raw(self, subject: str, payload: bytes, msg_id=None, timeout=5.0) -> bool:
        self.sent.append((subject, payload))
        return True


def test_the_publisher_sends_every_tick_on_md_tick_and_the_newest_on_md_last():
    bus = RecordingBus()
    clock = [0.0]
    pub = Publisher(
        bus,
        ServiceMetrics("md_last_test"),
        CandleAggregator(["1s"]),
        StalenessTracker(10.0),  # type: ignore[arg-type]
        monotonic=lambda: clock[0],
        last_interval_s=0.05,
    )
    market = SyntheticMarket(["BTC/USDT", "ETH/USDT"])

    async def run() -> None:
        for step in range(10):  # 10 steps, 10 ms apart
            clock[0] = step * 0.01
            await pub.quotes(
                market.step(), "2026-01-05T12:00:00Z", 1_767_614_400_000 + step * 10, "synthetic", clock[0]
            )
            await pub.flush_last()

    asyncio.run(run())
    ticks = [p for s, p in bus.sent if s.startswith("md.tick.")]
    lasts = [(s, p) for s, p in bus.sent if s.startswith("md.last.")]
    assert len(ticks) == 20
    assert {s for s, _ in lasts} == {"md.last.BTCUSDT", "md.last.ETHUSDT"}
    assert 4 <= len(lasts) <= 6  # ~ every 50 ms per symbol over 90 ms, not 20
    assert all(p in ticks for _, p in lasts)  # the same bytes as the ticks (the same message)
