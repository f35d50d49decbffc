"""The kernel's connection retry (tenacity): doubling waits up to a cap, only retryable errors, a deadline."""

import asyncio

import pytest

from libs.common.backoff import connect_retrying
from libs.common.errors import ConfigurationError, TemporaryError


def _run(retrying, fn):
    return asyncio.run(retrying(fn))


def test_retries_a_temporary_error_with_doubling_capped_waits_then_succeeds(monkeypatch):
    waits = []
    tries = []

    async def attempt():
        tries.append(1)
        if len(tries) < 6:
            raise TemporaryError("not yet")
        return "up"

    r = connect_retrying(
        TemporaryError, first_s=0.001, max_s=0.004, deadline_s=10, on_retry=lambda e, w: waits.append(w)
    )
    assert _run(r, attempt) == "up"
    assert waits == [0.001, 0.002, 0.004, 0.004, 0.004]


def test_an_error_that_is_not_retryable_is_raised_at_once():
    tries = []

    async def attempt():
        tries.append(1)
        raise ConfigurationError("nats.url", "empty")

    r = connect_retrying(TemporaryError, first_s=0.001, max_s=0.01, deadline_s=10, on_retry=lambda e, w: None)
    with pytest.raises(ConfigurationError):
        _run(r, attempt)
    assert len(tries) == 1


def test_past_the_deadline_the_last_error_is_raised_as_is():
    tries = []

    async def attempt():
        tries.append(1)
        raise TemporaryError(f"try {len(tries)}")

    r = connect_retrying(
        TemporaryError, first_s=0.001, max_s=0.001, deadline_s=0.0, on_retry=lambda e, w: None
    )
    with pytest.raises(TemporaryError, match="try 1"):
        _run(r, attempt)
    assert len(tries) == 1
