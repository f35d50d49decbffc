"""Faults on demand: `fake.faults.next("POST /api/v3/order", "accept_timeout", count=1, seconds=30)`.

A fault matches an endpoint written as "METHOD /path" (e.g. "POST /api/v3/order"), "/path" (any method)
or "*" (every REST request), optionally narrowed by `where=lambda params: ...` on the request parameters.
It fires for the next `count` matching requests (`count=None`: until `clear()`), in the order the faults
were added. Kinds (and their parameters):

| kind | answer | ccxt raises |
|---|---|---|
| `429` | 429, `Retry-After: retry_after` (1), -1003 | DDoSProtection (RateLimitExceeded is its subclass) |
| `418` | 418, `Retry-After`, -1003 "IP banned until"; `ban_seconds` (0): every request gets 418 until then | DDoSProtection |
| `5xx` | `status` (503), non-JSON gateway body unless `body` given; the request is NOT processed | ExchangeNotAvailable (504: RequestTimeout) |
| `delay` | sleeps `seconds` (2) before processing normally | RequestTimeout when > ccxt `timeout` |
| `malformed` | processes the request, answers 200 with truncated JSON | BadResponse / a parse error (see README) |
| `accept_timeout` | processes the request (the order IS placed), then holds the answer `seconds` (60) | RequestTimeout |
| `accept_5xx` | processes the request (the order IS placed), then answers `status` (503) | ExchangeNotAvailable |
| `disconnect` | closes the connection without an answer; `accept` (False): process the request first | NetworkError |
| `clock_skew` | 400 -1021 "Timestamp for this request is outside of the recvWindow." | InvalidNonce |
| `unknown_status` | `status` (503) with `code` -1006 or -1007; `accept` (True): the order IS placed first | OperationFailed (-1006) / RequestTimeout (-1007) |
| `insufficient_balance` | 400 -2010 "Account has insufficient balance for requested action." | InsufficientFunds |
| `filter_failure` | 400 -1013 "Filter failure: <filter>" (`filter`="LOT_SIZE") | InvalidOrder (LOT_SIZE, PRICE_FILTER), BadRequest (NOTIONAL) |
| `result_only` | processes the request (the order IS placed), answers without `fills` (Binance's RESULT shape): the client must look the trades up | no exception |
| `order_not_found` | 400 -2013 "Order does not exist." (eventual consistency after an accept) | OrderNotFound |
| `error` | `status` (400) with `code`/`msg` | whatever ccxt maps the code to |
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

KINDS = {
    "429",
    "418",
    "5xx",
    "delay",
    "malformed",
    "accept_timeout",
    "accept_5xx",
    "disconnect",
    "clock_skew",
    "unknown_status",
    "insufficient_balance",
    "filter_failure",
    "order_not_found",
    "error",
    "result_only",
}


@dataclass
class Fault:
    endpoint: str
    kind: str
    count: int | None
    params: dict = field(default_factory=dict)
    where: Callable[[dict], bool] | None = None
    fired: int = 0

    def matches(self, method: str, path: str, params: dict) -> bool:
        ep = self.endpoint
        if ep != "*":
            m, _, p = ep.partition(" ") if " " in ep else ("", "", ep)
            if m and m.upper() != method.upper():
                return False
            if p.rstrip("/") != path.rstrip("/"):
                return False
        return self.where is None or bool(self.where(params))


class Faults:
    """The fault queue. Thread-safe: tests may add faults from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.fired: list[tuple[str, str, str]] = []  # (kind, method, path) of every fault that fired
        self.banned_until_ms = 0

    def next(
        self,
        endpoint: str,
        kind: str,
        count: int | None = 1,
        *,
        where: Callable[[dict], bool] | None = None,
        **params,
    ) -> Fault:
        kind = str(kind)
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        f = Fault(endpoint, kind, count, params, where)
        with self._lock:
            self._faults.append(f)
        return f

    def always(self, endpoint: str, kind: str, **params) -> Fault:
        return self.next(endpoint, kind, None, **params)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.banned_until_ms = 0

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, params: dict) -> Fault | None:
        """The first matching fault (consumed once), or None."""
        with self._lock:
            for f in self._faults:
                if f.matches(method, path, params):
                    f.fired += 1
                    if f.count is not None and f.fired >= f.count:
                        self._faults.remove(f)
                    self.fired.append((f.kind, method, path))
                    return f
        return None
