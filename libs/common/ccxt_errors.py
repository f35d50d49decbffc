"""The kernel's ccxt error adapter: what every service reads off a ccxt exception, in one place.

Services keep only their policy (which BN-ML error a ccxt class becomes, given what the request was):
`services/market_data/ccxt_adapter.py` for public data, `services/execution/adapter.py` for orders. What
they share is here: the two exchange-throttling errors, the HTTP status and `Retry-After` (or Binance's
`IP banned until <ms>`) read from an exception, Binance's own message, and scrubbing secrets out of a text.

Pure: no I/O, no clock (`now_ms` is passed in), no ccxt import (it works on any exception).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from libs.common.errors import InvalidInputError, OperationalError, TemporaryError

_STATUS_RE = re.compile(r"^\s*binance\s+(\d{3})\b")
_BANNED_UNTIL_RE = re.compile(r"banned until (\d{12,14})")
_SIGNATURE_RE = re.compile(r"(signature=)[0-9a-fA-F]+")
_BINANCE_MSG_RE = re.compile(r'"msg"\s*:\s*"([^"]{1,200})"')


class RateLimited(TemporaryError):
    """HTTP 429 / rate limit, refused before execution: wait `retry_after_s` (if the server said) before any
    new request."""


class ExchangeBanned(OperationalError):
    """HTTP 418: the IP is banned; no request may leave before `retry_after_s` (halt and alert)."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


ErrorKind = Literal["banned", "rate_limited", "temporary", "invalid", "operational"]


def error_kind(err: BaseException) -> ErrorKind:
    """The classification of a mapped BN-ML error (a metric label; services' retry predicates decide on it):
    banned (418), rate_limited (429), temporary (retry later), invalid (do not retry as is), operational."""
    if isinstance(err, ExchangeBanned):
        return "banned"
    if isinstance(err, RateLimited):
        return "rate_limited"
    if isinstance(err, TemporaryError):
        return "temporary"
    if isinstance(err, InvalidInputError):
        return "invalid"
    return "operational"


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A response header, case-insensitively."""
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == name.lower():
            return str(v)
    return None


def retry_after_s(
    headers: Mapping[str, Any] | None, message: str = "", now_ms: int | None = None
) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds) or Binance's `banned until <epoch ms>` (when
    `now_ms` is given); None when neither says."""
    raw = header(headers, "Retry-After")
    if raw is not None:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    m = _BANNED_UNTIL_RE.search(message)
    if m and now_ms is not None:
        return max(0.0, (int(m.group(1)) - now_ms) / 1000.0)
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status ccxt puts at the start of its message (`binance 418 ...`), if any."""
    m = _STATUS_RE.match(str(exc))
    return int(m.group(1)) if m else None


def binance_reason(exc: BaseException, default: str) -> str:
    """A short, stable reason: Binance's `msg` when the body carries one."""
    m = _BINANCE_MSG_RE.search(str(exc))
    return f"{default}: {m.group(1)}" if m else default


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove request signatures and any secret value (4 characters or more) from a message; at most 500
    characters."""
    text = _SIGNATURE_RE.sub(r"\1***", text)
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text[:500]
