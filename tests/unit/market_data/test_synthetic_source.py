"""SyntheticSource's pacing: a step's ticks go out whole, or in slices spread over the step's period."""

from __future__ import annotations

import asyncio
import time

from libs.common.settings.market_data import SyntheticSettings
from services.market_data.sources import SyntheticSource
from services.market_data.synthetic import SyntheticMarket, synthetic_symbols


class RecordingPublisher:
    """Stands in for `Publisher.quotes`: what each call sent, and when (monotonic)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str], str]] = []

    async def quotes(self, quotes, ts_iso, ts_ms, source, mono) -> None:
        self.calls.append((time.monotonic(), [q.symbol for q in quotes], ts_iso))


def _run(slices: int, symbols: int = 10, steps: int = 3, rate: float = 10.0) -> RecordingPublisher:
    syms = synthetic_symbols(["BTC/USDT"], symbols)
    source = SyntheticSource(
        SyntheticMarket(syms, 7, SyntheticSettings()), rate, max_steps=steps, slices=slices
    )
    pub = RecordingPublisher()
    asyncio.run(source.run(pub))  # type: ignore[arg-type]  # only `quotes` is called
    return pub


def test_one_slice_sends_each_step_whole():
    pub = _run(slices=1)
    assert len(pub.calls) == 3
    assert all(len(symbols) == 10 for _, symbols, _ in pub.calls)


def test_slices_split_a_step_disjointly_and_spread_it_over_the_period():
    pub = _run(slices=5)
    assert len(pub.calls) == 15
    for step in range(3):
        parts = [symbols for _, symbols, _ in pub.calls[step * 5 : step * 5 + 5]]
        assert [len(p) for p in parts] == [2] * 5
        flat = [s for p in parts for s in p]
        assert len(set(flat)) == 10  # every symbol once a step, none twice
    # spread over the 100 ms period: the last slice of a step leaves ~80 ms after its first, each stamped then
    first, last = pub.calls[0], pub.calls[4]
    assert last[0] - first[0] >= 0.07
    assert last[2] > first[2]


def test_more_slices_than_symbols_sends_one_symbol_a_slice():
    pub = _run(slices=50, symbols=4, steps=1)
    assert [len(symbols) for _, symbols, _ in pub.calls] == [1, 1, 1, 1]
