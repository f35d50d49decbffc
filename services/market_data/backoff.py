"""When to ask the exchange again after an error (pure core; time and randomness passed in).

- temporary errors (network, 5xx, exchange not available, malformed answers): exponential back-off
  with full jitter, capped;
- rate limited (HTTP 429, DDoSProtection, RateLimitExceeded): wait at least `Retry-After`
  (or the current back-off when the server gives none);
- banned (HTTP 418): no request at all until the ban ends (`Retry-After`, else a default), and the
  caller raises an alert once per ban.

`allowed(now)` is the single gate every request goes through. Success resets the back-off.

The jittered exponential wait is tenacity's (`wait_exponential` for the floor plus `wait_random_exponential`
for the jitter); `retrying()` is the `tenacity.AsyncRetrying` the live source runs each pass of its loop in,
retrying on the kernel's error classification (`libs/common/ccxt_errors.error_kind`) with this policy's waits.
What stays here is market_data's policy: which kinds retry, Retry-After and bans, the caps, and the rule
that a promised wait is never shortened (a ban holds every request, not only the one that failed).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_never,
    wait_exponential,
    wait_random_exponential,
)

from libs.common.ccxt_errors import error_kind

ErrorKind = Literal["temporary", "rate_limited", "banned"]
State = Literal["ok", "backoff", "rate_limited", "banned"]
STATE_CODE: dict[State, int] = {"ok": 0, "backoff": 1, "rate_limited": 2, "banned": 3}


def backoff_kind(err: BaseException) -> ErrorKind:
    """market_data's policy class of an error: bans and rate limits are honoured as such, anything else
    (temporary, but also invalid input or an unexpected failure: the loop never dies) backs off."""
    kind = error_kind(err)
    if kind == "banned" or kind == "rate_limited":
        return kind
    return "temporary"


def retries(exc: BaseException) -> bool:
    """The live loop's retry predicate: every failure is retried after the policy's wait, except a
    cancellation (the service stopping)."""
    return isinstance(exc, Exception)  # asyncio.CancelledError is a BaseException


class _SeededRandomExponential(wait_random_exponential):
    """tenacity's full jitter (uniform in [0, ceiling]) drawn from a given random source (tests seed it)."""

    def __init__(self, rng: random.Random, **kw: float) -> None:
        super().__init__(**kw)
        self._rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        high = wait_exponential.__call__(self, retry_state)
        return self._rng.uniform(0, high)


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
        self._ceiling_wait = wait_exponential(multiplier=initial_s, max=max_s, exp_base=factor)
        # full jitter, but never less than a tenth of the ceiling (no hot loop): 0.1 c + U(0, 0.9 c)
        self._jitter_wait = wait_exponential(
            multiplier=0.1 * initial_s, max=0.1 * max_s, exp_base=factor
        ) + _SeededRandomExponential(self._rng, multiplier=0.9 * initial_s, max=0.9 * max_s, exp_base=factor)
        self._view = Retrying()  # what tenacity's wait strategies are asked through (attempt number only)
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

    def _attempt(self) -> RetryCallState:
        """tenacity's view of where we are: the attempt number is the count of consecutive errors."""
        rs = RetryCallState(self._view, None, (), {})
        rs.attempt_number = max(1, self.consecutive_errors)
        return rs

    def _ceiling(self) -> float:
        return float(self._ceiling_wait(self._attempt()))

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
            wait = float(self._jitter_wait(self._attempt()))
            state = "backoff"
        if self.state == "banned" and self.until > now:
            state = "banned"  # a ban stays a ban until it ends, whatever else fails meanwhile
        # a wait already promised (Retry-After, ban) is never shortened by a later error
        self.state, self.until = state, max(self.until, now + wait)
        return RetryDecision(
            self.state, max(0.0, self.until - now), self.until, new_ban, self.consecutive_errors
        )

    def retrying(
        self,
        record: Callable[[BaseException], RetryDecision],
        report: Callable[[BaseException, RetryDecision], Awaitable[None]],
        sleep: Callable[[float], Awaitable[None]],
    ) -> AsyncRetrying:
        """A tenacity retrier for a pass of a loop that must never die. Each failure is `record`ed (mapped and
        put on this policy: its decision's wait is tenacity's wait), then `report`ed (log, alerts), then
        tenacity sleeps with `sleep` (the caller's gate, which waits until the policy allows a request, so a
        ban that a later error met is never cut short)."""
        decided: dict[int, RetryDecision] = {}

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            assert exc is not None
            d = decided[id(rs)] = record(exc)
            return d.wait_s

        async def before_sleep(rs: RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            d = decided.pop(id(rs), None)
            if exc is not None and d is not None:
                await report(exc, d)

        return AsyncRetrying(
            retry=retry_if_exception(retries),
            wait=wait,
            before_sleep=before_sleep,
            sleep=sleep,
            stop=stop_never,
            reraise=True,
        )
