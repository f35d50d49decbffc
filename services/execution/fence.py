"""The send fence: which order requests are past the last gate check and not finished yet.

The kill switch latches synchronously (no send can pass the gate after that line), then waits here until
every request already past the gate has finished, and only then says "latched: no order is sent from now
on". Between the gate check and the bytes leaving, ccxt's rate limiter and the HTTP connect yield to the
loop (and the paper book's simulated latency sleeps); a request in that gap is announced, counted and
waited for instead of reaching the exchange after the notice.

Rules for callers: enter the fence in the same synchronous step as the gate check that allowed the send
(no `await` between them), and leave it when the request has finished (answered, refused, timed out).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class SendFence:
    def __init__(self) -> None:
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Around one order request that passed the gate."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def drained(self) -> int:
        """Wait until no request past the gate is unfinished; returns how many there were when called.

        Does not yield when nothing is in flight (the usual case: the latch notice stays immediate)."""
        n = self._in_flight
        while self._in_flight:
            await self._idle.wait()
        return n
