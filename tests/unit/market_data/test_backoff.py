"""Back-off policy: jittered exponential for temporary errors, Retry-After for 429, a hard stop for 418."""

import random

import pytest

from services.market_data.backoff import BackoffPolicy


def _policy(**kw):
    return BackoffPolicy(initial_s=1.0, max_s=30.0, ban_default_s=120.0, rng=random.Random(1), **kw)


def test_temporary_errors_back_off_exponentially_with_jitter_and_a_cap():
    p = _policy()
    waits, now = [], 0.0
    for _ in range(10):  # each retry fails again as soon as it is allowed
        d = p.on_error("temporary", now)
        waits.append(d.wait_s)
        now = d.until
    ceilings = [min(30.0, 2.0**i) for i in range(10)]
    for w, c in zip(waits, ceilings, strict=True):
        assert 0.1 * c <= w <= c
    assert len(set(waits)) == len(waits)  # jittered
    assert p.state == "backoff" and p.consecutive_errors == 10


def test_requests_are_refused_until_the_wait_has_passed_and_success_resets():
    p = _policy()
    d = p.on_error("temporary", 100.0)
    assert not p.allowed(100.0) and p.allowed(d.until)
    p.on_success(d.until)
    assert p.state == "ok" and p.consecutive_errors == 0
    assert p.on_error("temporary", 200.0).wait_s <= 1.0


def test_rate_limit_honours_retry_after_exactly():
    p = _policy()
    d = p.on_error("rate_limited", 10.0, retry_after_s=7)
    assert d.state == "rate_limited" and d.until == 17.0
    assert not p.allowed(16.99) and p.allowed(17.0)


def test_rate_limit_without_retry_after_uses_the_backoff_ceiling():
    p = _policy()
    assert p.on_error("rate_limited", 0.0).wait_s == 1.0


def test_ban_stops_requests_for_the_ban_period_and_is_flagged_new_once():
    p = _policy()
    d = p.on_error("banned", 0.0, retry_after_s=300)
    assert d.state == "banned" and d.until == 300 and d.new_ban
    d2 = p.on_error("banned", 10.0, retry_after_s=300)
    assert not d2.new_ban
    assert not p.allowed(299.0)


def test_ban_without_retry_after_uses_the_default():
    p = _policy()
    assert p.on_error("banned", 0.0).until == 120.0


def test_a_milder_error_never_shortens_a_ban():
    p = _policy()
    p.on_error("banned", 0.0, retry_after_s=300)
    d = p.on_error("temporary", 5.0)
    assert d.state == "banned" and d.until == 300
    p.on_success(100.0)  # a success can't happen during a ban; and if reported early it doesn't lift it
    assert p.state == "banned" and not p.allowed(100.0)


@pytest.mark.parametrize("kind", ["temporary", "rate_limited", "banned"])
def test_never_a_hot_loop(kind):
    p = _policy()
    now = 0.0
    for _ in range(50):
        d = p.on_error(kind, now)
        assert d.wait_s >= 0.1
        now = d.until


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(
    st.lists(st.sampled_from(["temporary", "rate_limited", "banned", "ok"]), min_size=1, max_size=40),
    st.integers(0, 2**32),
)
def test_next_request_is_never_allowed_before_the_last_retry_after_or_ban(events, seed):
    """Invariant: after any error sequence, nothing is allowed before the latest Retry-After/ban ends."""
    p = BackoffPolicy(initial_s=0.5, max_s=20.0, ban_default_s=60.0, rng=random.Random(seed))
    now, must_wait_until = 0.0, 0.0
    for ev in events:
        if ev == "ok":
            now = max(now, p.until)
            p.on_success(now)
            assert p.state == "ok" and p.allowed(now)
            continue
        d = p.on_error(ev, now, retry_after_s=3.0 if ev != "temporary" else None)
        if ev in ("rate_limited", "banned"):
            must_wait_until = max(must_wait_until, now + 3.0)
        assert d.until >= now + 0.05  # never a hot loop
        assert p.until >= must_wait_until  # a promised wait is never shortened
        assert not p.allowed(must_wait_until - 1e-6) or must_wait_until <= now
        now += d.wait_s / 2  # the next error comes before the wait is over (a concurrent request)


# -- tenacity wiring: the retry predicate and the pass retrier -------------------------------------------------
import asyncio  # noqa: E402

from libs.common.ccxt_errors import ExchangeBanned, RateLimited  # noqa: E402
from libs.common.errors import InvalidInputError, OperationalError, TemporaryError  # noqa: E402
from services.market_data.backoff import backoff_kind, retries  # noqa: E402


def test_policy_kind_of_each_classified_error():
    assert backoff_kind(ExchangeBanned("418", 5)) == "banned"
    assert backoff_kind(RateLimited("429")) == "rate_limited"
    for err in (TemporaryError("t"), InvalidInputError("i"), OperationalError("o"), ValueError("v")):
        assert backoff_kind(err) == "temporary"  # the loop never dies: anything else backs off


def test_everything_but_a_cancellation_is_retried():
    assert retries(TemporaryError("t")) and retries(OperationalError("o")) and retries(KeyError("k"))
    assert not retries(asyncio.CancelledError())


def test_the_retrier_records_reports_waits_and_reruns_until_the_pass_succeeds():
    p = _policy()
    now = [0.0]
    seen, slept = [], []

    def record(exc):
        return p.on_error(backoff_kind(exc), now[0], getattr(exc, "retry_after_s", None))

    async def report(exc, d):
        seen.append((type(exc).__name__, d.state, d.consecutive_errors))

    async def sleep(s):
        slept.append(s)
        now[0] = p.until

    outcomes = [RateLimited("429"), TemporaryError("t")]

    async def one_pass():
        if outcomes:
            raise outcomes.pop(0)
        return "done"

    assert asyncio.run(p.retrying(record, report, sleep)(one_pass)) == "done"
    assert seen == [("RateLimited", "rate_limited", 1), ("TemporaryError", "backoff", 2)]
    assert len(slept) == 2 and slept[0] == 1.0


def test_the_retrier_lets_a_cancellation_through():
    p = _policy()

    async def cancelled():
        raise asyncio.CancelledError

    async def noop(*a):
        return None

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(p.retrying(lambda e: p.on_error("temporary", 0.0), noop, noop)(cancelled))
    assert p.consecutive_errors == 0
