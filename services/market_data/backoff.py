"""When to ask the exchange again after an error (pure core; time and randomness passed in).

- temporary errors (network, 5xx, exchange not available, malformed answers): exponential back-off
  with full jitter, capped;
- rate limited (HTTP 429, DDoSProtection, RateLimitExceeded): wait at least `Retry-After`
  (or the current back-off when the server gives none);
- banned (HTTP 418): no request at all until the ban ends (`Retry-After`, else a default), and the
  caller raises an alert once per ban.

`allowed(now)` is the single gate every request goes through. Success resets the back-off.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal["temporary", "rate_limited", "banned"]
State = Literal["ok", "backoff", "rate_limited", "banned"]
STATE_CODE: dict[State, int] = {"ok": 0, "backoff": 1, "rate_limited": 2, "banned": 3}


@dataclass(frozen=True)
class RetryDecision:
    state: State
    wait_s: float
    until: float
    new_ban: bool = False
    consecutive_errors: int = 0


class BackoffPolicy:
    def __init__(
        self,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        ban_default_s: float = 120.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ):
        self.initial_s, self.max_s, self.ban_default_s, self.factor = initial_s, max_s, ban_default_s, factor
        self._rng = rng or random.Random()
        self.consecutive_errors = 0
        self.state: State = "ok"
        self.until = 0.0

    def allowed(self, now: float) -> bool:
        return now >= self.until

    def wait_s(self, now: float) -> float:
        return max(0.0, self.until - now)

    def on_success(self, now: float) -> None:
        if now >= self.until:
            self.consecutive_errors = 0
            self.state = "ok"

    def _ceiling(self) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, self.consecutive_errors - 1))

    def on_error(self, kind: ErrorKind, now: float, retry_after_s: float | None = None) -> RetryDecision:
        self.consecutive_errors += 1
        new_ban = False
        if kind == "banned":
            wait = retry_after_s if retry_after_s and retry_after_s > 0 else self.ban_default_s
            new_ban = self.state != "banned" or now >= self.until
            state: State = "banned"
        elif kind == "rate_limited":
            wait = retry_after_s if retry_after_s is not None and retry_after_s >= 0 else self._ceiling()
            state = "rate_limited"
        else:
            ceiling = self._ceiling()
            # full jitter, but never less than a tenth of the ceiling (no hot loop)
            wait = ceiling * (0.1 + 0.9 * self._rng.random())
            state = "backoff"
        if self.state == "banned" and self.until > now:
            state = "banned"  # a ban stays a ban until it ends, whatever else fails meanwhile
        # a wait already promised (Retry-After, ban) is never shortened by a later error
        self.state, self.until = state, max(self.until, now + wait)
        return RetryDecision(
            self.state, max(0.0, self.until - now), self.until, new_ban, self.consecutive_errors
        )
