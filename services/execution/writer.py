"""execution's seat as the single writer (shell): the advisory lock's loop and the verdict consumer's bind.

One writer per database (`libs/common/writer_lock.py`): a standby retries the lock every check; the writer
checks it every `lock_check_interval_s` and stops (fail closed) the moment it is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from libs.common.errors import OperationalError
from libs.common.writer_lock import WriterLock

BIND_RETRY_S = 0.25


async def hold_writer_seat(
    lock: WriterLock,
    interval_s: float,
    is_writer: Callable[[], bool],
    on_check: Callable[[], Awaitable[None]],
    on_lost: Callable[[], Awaitable[None]],
    on_acquired: Callable[[], Awaitable[None]],
    log: Any,
) -> None:
    """Stand by until the lock is free; as the writer, stop (fail closed) the moment the lock is lost."""
    while True:
        await asyncio.sleep(interval_s)
        if is_writer():
            await on_check()
            if not await lock.still_held():
                await on_lost()
                raise OperationalError("execution lost the single-writer advisory lock")
        else:
            try:
                got = await lock.try_acquire()
            except Exception as exc:
                log.warning("writer lock attempt failed", error=str(exc))
                continue
            if got:
                await on_acquired()


async def bind_when_free(
    subscribe: Callable[[], Awaitable[Any]], lock: WriterLock, on_wait: Callable[[], None]
) -> Any:
    """The durable verdict consumer, once a deposed predecessor has let go of it: one that was paused
    (SIGSTOP) keeps it bound until it resumes and stops, or until NATS drops its silent connection. Nothing
    is sent meanwhile; the lock session is kept alive (and checked) while waiting."""
    while True:
        try:
            return await subscribe()
        except Exception as exc:
            if "bound" not in str(exc):
                raise
        if not await lock.still_held():
            raise OperationalError("execution lost the single-writer lock while waiting for its consumer")
        on_wait()
        await asyncio.sleep(BIND_RETRY_S)
