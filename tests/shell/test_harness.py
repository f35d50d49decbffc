"""The harness itself: a service runs through `libs.common.service.running` on the test clock, is stopped when the
block ends, and a service that dies of a fatal error during the test fails it (unless the test expects that)."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.service import Runtime
from tests.kit.harness import START, in_process

pytestmark = pytest.mark.integration  # on this test's NATS


class Probe:
    """A minimal service: records what the runtime gave it and whether it was stopped; can die on demand."""

    name = "probe"
    needs_db = False

    def __init__(self) -> None:
        self.rt: Runtime | None = None
        self.stopped = False
        self.die = asyncio.Event()

    async def start(self, rt: Runtime) -> None:
        self.rt = rt

        async def dies_when_told() -> None:
            await self.die.wait()
            raise RuntimeError("probe died")

        rt.spawn(dies_when_told(), "probe")  # a background task that dies stops the service (fail closed)

    async def stop(self) -> None:
        self.stopped = True

    def health(self) -> tuple[str, str]:
        return "ok", ""


async def test_the_service_runs_on_the_test_clock_and_is_stopped_at_the_end(settings_for):
    probe = Probe()
    async with in_process(probe, settings_for()) as shell:
        assert probe.rt is shell.rt and shell.rt.clock is shell.clock
        assert shell.rt.clock.now() == START
        shell.advance(60)
        assert probe.rt.clock.now() == START.replace(minute=1)
        assert shell.rt.bus.connected and not probe.stopped
    assert probe.stopped and not shell.rt.bus.connected


async def test_a_service_that_dies_during_the_test_fails_it_unless_expected(settings_for):
    probe = Probe()
    with pytest.raises(AssertionError, match="fatal error"):
        async with in_process(probe, settings_for()) as shell:
            probe.die.set()
            fatal = shell.rt.bus.fatal
            assert fatal is not None
            await asyncio.wait_for(asyncio.shield(fatal), 10)
    assert probe.stopped

    expected = Probe()
    async with in_process(expected, settings_for(), may_die=True) as shell:
        expected.die.set()
        fatal = shell.rt.bus.fatal
        assert fatal is not None
        await asyncio.wait_for(asyncio.shield(fatal), 10)
        assert isinstance(shell.died(), RuntimeError)
