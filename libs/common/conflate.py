"""Conflation: the newest valid message per subject, for readers that want the latest value, not every one.

Risk and execution need each symbol's last price, not every tick. market_data sends it on `md.last.<SYM>`
at most every `market_data.last_interval_ms` per symbol, so this stream stays small whatever the tick rate
(200 symbols at 100 ms: at most 2,000 messages a second). Each payload is validated as it arrives, like any
other message: an invalid one is dead-lettered at once and never replaces the last good value. Readers
then take what is new:

- `latest(subject)`: the newest valid message (None before the first one);
- `drain()`: the newest valid message of every subject that received one since the last drain;
  `take(subject)` does the same for one subject; `skip()` forgets what is new without handing it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from libs.common.contracts import Message
from libs.common.errors import InvalidInputError

M = TypeVar("M", bound=Message)


class Conflated(Generic[M]):
    def __init__(
        self,
        model: type[M],
        decode: Callable[[type[M], str, bytes], M],
        dead_letter: Callable[[str, bytes, str], Any],
    ):
        self.model = model
        self._decode = decode
        self._dead_letter = dead_letter
        self._valid: dict[str, M] = {}
        self._undrained: set[str] = set()  # a valid message arrived since the last drain()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.received = 0
        self.invalid = 0

    def put(self, subject: str, data: bytes) -> None:
        """The NATS callback: validate, then keep the message as its subject's newest value."""
        self.received += 1
        try:
            msg = self._decode(self.model, subject, data)
        except InvalidInputError as exc:
            self.invalid += 1
            res = self._dead_letter(subject, data, str(exc))
            if asyncio.iscoroutine(res):  # published in the background; the callback stays synchronous
                task = asyncio.get_running_loop().create_task(res)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        self._valid[subject] = msg
        self._undrained.add(subject)

    def latest(self, subject: str) -> M | None:
        return self._valid.get(subject)

    def take(self, subject: str) -> M | None:
        """Like `drain()` for one subject: its newest valid message if one arrived since it was drained."""
        if subject not in self._undrained:
            return None
        self._undrained.discard(subject)
        return self._valid[subject]

    def drain(self) -> list[M]:
        pending, self._undrained = self._undrained, set()
        return [self._valid[subject] for subject in pending]

    def skip(self) -> None:
        """Forget what arrived since the last drain (nobody needs it now); `latest()` still has it."""
        self._undrained.clear()
