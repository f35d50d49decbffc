"""An in-process shell harness: a service's shell on the test's own NATS and Postgres, on a clock the test moves.

`python -m services.<name>` runs `libs.common.service.run_service`, which starts the service through
`libs.common.service.running`; this harness starts the same service class through that same `running`, inside
the test's event loop, with a `ManualClock` instead of the wall clock. So a rule that reads the runtime's clock
(a breaker on a heartbeat that stopped, a verdict past its TTL, a model gone stale) is hit by
`clock.advance(seconds)` instead of by waiting that long on the wall clock, and the test reads the shell's
state (`shell.app`) as well as what it publishes.

What stays the machine's: the shells' loop periods (`asyncio.sleep`), so a test waits for a real effect with
`wait_until` after moving the clock, never for a fixed time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry

from libs.common.clock import ManualClock
from libs.common.logging import configure_logging
from libs.common.metrics import ServiceMetrics
from libs.common.service import Runtime, ServiceApp, check_settings, running
from libs.common.settings import BotSettings, load_settings
from tests.helpers import OPERATOR_TOKEN, RELEASE_KEY, VIEWER_TOKEN, write_config

App = TypeVar("App", bound=ServiceApp)
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday noon: far from the daily rollover


def shell_settings(
    tmp_path: Path, nats_url: str, database_url: str, overrides: dict[str, Any] | None = None
) -> BotSettings:
    """The settings a service process of the suite would load (tests/helpers.py `write_config`, the same file
    and the same `load_settings`), pointed at this test's servers."""
    own: dict[str, Any] = {
        "nats": {"url": nats_url},
        "database": {"url": database_url},
        "ops_api": {"operator_token": OPERATOR_TOKEN, "viewer_token": VIEWER_TOKEN, "port": 0},
        "kill_switch": {"release_key": RELEASE_KEY},
    }
    merged = _merge(own, overrides or {})
    return load_settings(write_config(tmp_path / "shell-bot.yaml", merged))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Shell(Generic[App]):
    """A running shell: its app (for its state), its runtime, and the clock the test moves."""

    app: App
    rt: Runtime
    clock: ManualClock

    def advance(self, seconds: float) -> datetime:
        return self.clock.advance(seconds)

    def died(self) -> BaseException | None:
        """The error that stopped the service (fail closed), if one did."""
        fatal = self.rt.bus.fatal
        return fatal.result() if fatal is not None and fatal.done() else None


@asynccontextmanager
async def in_process(
    app: App, settings: BotSettings, clock: ManualClock | None = None, *, may_die: bool = False
) -> AsyncIterator[Shell[App]]:
    """Start `app` (an instance of the class its `__main__` runs) through `running`, on `clock`.

    Its metrics live in a registry of their own (several shells in one test process) and are not served. On
    leaving, the service is stopped as on SIGTERM; a service that died of a fatal error during the test fails
    the test unless `may_die`."""
    check_settings(app, settings)
    clock = clock or ManualClock(START)
    metrics = ServiceMetrics(app.name, registry=CollectorRegistry())
    async with running(app, settings, clock=clock, metrics=metrics, log=configure_logging(app.name)) as rt:
        # readiness: a round trip on the service's own connection, so the server has every subscription the
        # service made in `start` before the test publishes (a core NATS message to no subscriber is lost)
        assert rt.bus.nc is not None
        await rt.bus.nc.flush()
        shell = Shell(app=app, rt=rt, clock=clock)
        yield shell
        died = shell.died()
    if died is not None and not may_die:
        raise AssertionError(f"{app.name} stopped on a fatal error during the test: {died!r}")
