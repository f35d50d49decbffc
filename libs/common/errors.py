"""One small error hierarchy; every adapter (ccxt, psycopg, nats) maps its exceptions onto it."""

from __future__ import annotations


class BnmlError(Exception):
    """Base of every error BN-ML raises on purpose."""


class TemporaryError(BnmlError):
    """Retry with backoff (network blip, exchange busy, server restarting)."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidInputError(BnmlError):
    """Reject, never retry (bad message, bad request, order refused by exchange filters)."""


class OperationalError(BnmlError):
    """Halt and alert (state unknown, invariant broken, exchange ban)."""


class ConfigurationError(BnmlError):
    """Refuse to start; the message names the offending key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"configuration error at '{key}': {problem}")
        self.key = key
        self.problem = problem
