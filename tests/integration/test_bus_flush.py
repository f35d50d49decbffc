"""`Bus.publish(..., flush_now=True)`: a core NATS message leaves before the publishing handler yields again.

nats-py only queues a core publish; its flusher task writes the queue when the loop next runs it. A handler
working through a burst (here: blocking, as a CPU-bound burst does) would otherwise hold every message it
publishes until the burst ends. A second connection on its own thread and loop watches for the message while
the publishing loop is blocked.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import nats
import pytest

from libs.common import subjects
from libs.common.contracts import Signal, utcnow

pytestmark = pytest.mark.integration

BLOCKED_S = 2.0  # how long the publishing loop stays blocked after the publish


class Watcher:
    """Receives on `subject` in its own thread and loop; `seen` is set when a message arrives."""

    def __init__(self, url: str, subject: str):
        self.url, self.subject = url, subject
        self.seen = threading.Event()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        nc = await nats.connect(self.url)

        async def on_msg(msg) -> None:
            self.seen.set()

        await nc.subscribe(self.subject, cb=on_msg)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def __enter__(self) -> Watcher:
        self._thread.start()
        assert self._ready.wait(10), "the watcher did not connect"
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _signal() -> Signal:
    return Signal(
        ts=utcnow(),
        symbol="BTC/USDT",
        side="BUY",
        probability=0.7,
        model_version="test",
        price=Decimal("60000"),
    )


@pytest.mark.parametrize("flush_now", [True, False])
async def test_flush_now_sends_before_the_handler_yields_and_without_it_the_message_waits(
    bus, nats_url, flush_now
):
    subject = subjects.signal("BTC/USDT")
    with Watcher(nats_url, subject) as watcher:
        await bus.publish(subject, _signal(), flush_now=flush_now)
        # the handler goes on without yielding (a burst of work): only what was written already can arrive
        arrived_while_blocked = watcher.seen.wait(BLOCKED_S)
        await asyncio.sleep(0)  # the handler ends; the loop runs again
        assert watcher.seen.wait(10), "the message never arrived"
    assert arrived_while_blocked is flush_now
