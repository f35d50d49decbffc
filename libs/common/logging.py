"""Structured logging: JSON when not on a terminal (containers, log files), readable on a terminal."""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.typing import FilteringBoundLogger

Logger = FilteringBoundLogger
"""What every shell logs with (`rt.log`): `info`/`warning`/`error`/`exception` with key-value context."""


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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    log: Logger = structlog.get_logger(service=service)
    return log


def get_logger(**bind: object) -> Logger:
    log: Logger = structlog.get_logger(**bind)
    return log
