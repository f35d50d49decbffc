"""Pytest fixtures for the fake. Import them into a test module (or a conftest) to use them:

from tests.fakes.binance.fixtures import fake_binance, fake_binance_thread  # noqa: F401
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.binance.server import FakeBinance


@pytest.fixture
async def fake_binance() -> AsyncIterator[FakeBinance]:
    """A fake running in the test's event loop (async tests)."""
    async with FakeBinance() as fake:
        yield fake
        assert fake.internal_errors == [], fake.internal_errors


@pytest.fixture
def fake_binance_thread() -> Iterator[FakeBinance]:
    """A fake running in its own thread (sync tests, or tests that block while a service subprocess works)."""
    fake = FakeBinance.run_in_thread()
    try:
        yield fake
    finally:
        fake.close()
