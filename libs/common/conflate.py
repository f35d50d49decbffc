"""Conflation: the newest message per subject, validated only when it is read.

Risk and execution need the last price of each symbol, not every tick. At tens of thousands of ticks a
second, validating every tick in every service costs more CPU than the rest of their work, so their tick
subscription keeps the newest raw payload per subject (a dict store, no parsing) and validates a payload
when it is read. The signal service, which needs every tick, validates every tick as before.

- `latest(subject)`: the newest valid message (a newer invalid payload is dead-lettered once and the
  previous valid message is kept).
- `drain()`: the newest valid message of every subject that received something since the last drain;
  `take(subject)` does the same for one subject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from libs.common.contracts import Message
from libs.common.errors import InvalidInputError

M = TypeVar("M", bound=Message)


class Conflated(Generic[M]):
    def __init__(self, model: type[M], decode: Callable[[type[M], str, bytes], M],
                 dead_letter: Callable[[str, bytes, str], Any]):
        self.model = model
        self._decode = decode
        self._dead_letter = dead_letter
        self._raw: dict[str, bytes] = {}
        self._valid: dict[str, M] = {}
        self._unread: set[str] = set()  # a newer payload than `_valid` holds (not validated yet)
        self._undrained: set[str] = set()  # received something since the last drain()
        self._newest_ok: dict[str, bool] = {}  # whether the newest payload validated
        self._tasks: set[asyncio.Task] = set()
        self.received = 0

    def put(self, subject: str, data: bytes) -> None:
        """The NATS callback: keep the bytes, nothing else."""
        self._raw[subject] = data
        self._unread.add(subject)
        self._undrained.add(subject)
        self.received += 1

    def latest(self, subject: str) -> M | None:
        if subject in self._unread:
            self._validate(subject)
        return self._valid.get(subject)

    def take(self, subject: str) -> M | None:
        """Like `drain()` for one subject: its newest valid message if it received one since it was drained."""
        if subject not in self._undrained:
            return None
        self._undrained.discard(subject)
        ok = self._validate(subject) if subject in self._unread else self._newest_ok.get(subject, False)
        return self._valid[subject] if ok else None

    def drain(self) -> list[M]:
        out = []
        pending, self._undrained = self._undrained, set()
        for subject in pending:
            ok = self._validate(subject) if subject in self._unread else self._newest_ok.get(subject, False)
            if ok:
                out.append(self._valid[subject])
        return out

    def skip(self) -> None:
        """Forget what arrived since the last drain, without validating it (nobody needs it now)."""
        self._undrained.clear()

    def _validate(self, subject: str) -> bool:
        self._unread.discard(subject)
        data = self._raw[subject]
        try:
            self._valid[subject] = self._decode(self.model, subject, data)
            self._newest_ok[subject] = True
            return True
        except InvalidInputError as exc:
            self._newest_ok[subject] = False
            res = self._dead_letter(subject, data, str(exc))
            if asyncio.iscoroutine(res):  # published in the background; read paths stay synchronous
                task = asyncio.get_running_loop().create_task(res)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return False
