"""The kernel's retry with back-off, on tenacity: one way to retry a start-up connection.

Services keep their own policy (market_data: `services/market_data/backoff.py`; execution: its own); this is
what the kernel's shells share: try, and on a retryable error wait `first_s`, then twice as long each time up
to `max_s`, until `deadline_s` has passed since the first try (then the last error is raised as is).
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)


def connect_retrying(
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    *,
    first_s: float,
    max_s: float,
    deadline_s: float,
    on_retry: Callable[[BaseException, float], None],
) -> AsyncRetrying:
    """An `AsyncRetrying` for a connection: `on_retry(error, wait_s)` is called before each wait."""

    def before_sleep(rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        if exc is not None:
            on_retry(exc, rs.upcoming_sleep)

    return AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_exponential(multiplier=first_s, max=max_s),
        stop=stop_after_delay(deadline_s),
        before_sleep=before_sleep,
        reraise=True,
    )
