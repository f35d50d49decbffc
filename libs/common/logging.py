"""Structured logging: JSON when not on a terminal (containers, log files), readable on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO, cast

import structlog
from structlog.typing import FilteringBoundLogger

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


@contextmanager
def handling(subject: str, msg_id: object) -> Iterator[None]:
    """While a bus handler runs: every log line it writes (through any structlog logger, `rt.log` included)
    carries the message's `subject` and `msg_id`, bound once here (structlog context variables, so concurrent
    handlers on one event loop each keep their own). Handlers do not pass them by hand."""
    with structlog.contextvars.bound_contextvars(subject=subject, msg_id=str(msg_id)):
        yield
