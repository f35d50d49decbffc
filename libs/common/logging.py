"""Structured logging: JSON when not on a terminal (containers, log files), readable on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger

Logger = FilteringBoundLogger
"""What every shell logs with (`rt.log`): `info`/`warning`/`error`/`exception` with key-value context."""


class _CurrentStderr:
    """`sys.stderr` as it is when a line is written, not when logging was configured: a logger cached before
    the stream was swapped (pytest's capture, a daemon's redirection) writes to the live stream, never to a
    closed one."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = cast(TextIO, _CurrentStderr())  # print() needs write and flush only


def configure_logging(service: str, level: str | None = None, json: bool | None = None) -> Logger:
    """Configure structlog once per process and return a logger bound to the service name."""
    level_name = (level or os.environ.get("BNML_LOG_LEVEL") or "INFO").upper()
    if json is None:
        json = os.environ.get("BNML_LOG_FORMAT", "").lower() == "json" or not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_handling,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    log: Logger = structlog.get_logger(service=service)
    return log


def get_logger(**bind: object) -> Logger:
    log: Logger = structlog.get_logger(**bind)
    return log


# The message a bus handler is handling: (subject, message id), or None. One context variable set per message
# (~0.1 us) and read only when a line is written (`add_handling`), because binding structlog's context
# variables for every message cost ~5 us: half of what signal spends on a tick.
_HANDLING: ContextVar[tuple[str, object] | None] = ContextVar("bnml_handling", default=None)


def add_handling(logger: object, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the handled message's subject and msg_id on the line (a key given by hand wins)."""
    current = _HANDLING.get()
    if current is not None:
        event_dict.setdefault("subject", current[0])
        event_dict.setdefault("msg_id", str(current[1]))
    return event_dict


def current_handling() -> dict[str, str]:
    """What a line written now would carry: {} outside a handler."""
    current = _HANDLING.get()
    return {} if current is None else {"subject": current[0], "msg_id": str(current[1])}


def begin_handling(subject: str, msg_id: object) -> Token[tuple[str, object] | None]:
    """Mark the current task as handling this message (the bus's hot path); `end_handling(token)` after."""
    return _HANDLING.set((subject, msg_id))


def end_handling(token: Token[tuple[str, object] | None]) -> None:
    _HANDLING.reset(token)


@contextmanager
def handling(subject: str, msg_id: object) -> Iterator[None]:
    """While a bus handler runs: every log line it writes (through any structlog logger, `rt.log` included)
    carries the message's `subject` and `msg_id`, set once here (a context variable, so concurrent handlers
    on one event loop each keep their own). Handlers do not pass them by hand."""
    token = begin_handling(subject, msg_id)
    try:
        yield
    finally:
        end_handling(token)
