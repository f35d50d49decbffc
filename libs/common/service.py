"""The shell every service shares: configure, connect, start, heartbeat, stop cleanly on SIGTERM.

Start order (docs/design.md, "The shape of a service"): load settings (refuse to start on a bad key), serve
/metrics, connect NATS and provision streams, migrate and open the Postgres pool, let the service read its
retained state and subscribe (`start`), then heartbeat until SIGTERM/SIGINT or a fatal handler error. Stop
order: the service's own `stop`, drain NATS subscriptions, close the pool, all within a bounded time.

`running` is the one place a Runtime is built and a service started and stopped; `run_service` (the process
entry, `python -m services.<name>`) runs through it with the clock `clock_for(settings)` picks, and the
in-process test harness (tests/kit/harness.py) runs the same service class through it with a ManualClock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from libs.common import subjects
from libs.common.backoff import connect_retrying
from libs.common.bus import Bus
from libs.common.clock import WALL, Clock, clock_for
from libs.common.contracts import Alert, Heartbeat, Severity, utcnow
from libs.common.db import Pool, migrate_async, open_pool
from libs.common.errors import ConfigurationError, OperationalError, TemporaryError
from libs.common.logging import Logger, configure_logging
from libs.common.metrics import ServiceMetrics
from libs.common.settings import BotSettings, load_settings

STOP_TIMEOUT_S = 10.0
T = TypeVar("T")
SHARD_PORT_STEP = (
    100  # shard i of a service serves /metrics on metrics_port + 100 * i (0 stays "any free port")
)


class ServiceApp(Protocol):
    name: str
    needs_db: bool

    async def start(self, rt: Runtime) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> tuple[str, str]:
        """(`ok` | `degraded` | `halted`, detail) for the heartbeat."""
        ...

    # optional: `shard_info() -> ShardInfo | None`, the shard a sharded service (signal, market_data) serves,
    # sent in every heartbeat (docs/interfaces.md); `writer_epoch() -> int | None`, the epoch a single-writer
    # service (risk, execution) takes work under, None unless it does (readiness from the bus, not a log line)


@dataclass
class Runtime:
    """What a running service has at hand: settings, bus, pool, metrics, logger, and the clock its shell reads."""

    name: str
    settings: BotSettings
    metrics: ServiceMetrics
    bus: Bus
    db_pool: Pool | None
    log: Logger
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_monotonic: float = field(default_factory=time.monotonic)
    metrics_port: int | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    clock: Clock = WALL

    @property
    def pool(self) -> Pool:
        """The Postgres pool of a service that asked for one (`needs_db`); asking without is a bug."""
        if self.db_pool is None:
            raise OperationalError(f"{self.name} has no database pool (its app does not declare needs_db)")
        return self.db_pool

    async def alert(self, severity: Severity, title: str, detail: str = "", dedup_key: str = "") -> None:
        """Raise an alert on the bus (ops_api delivers it) and log it locally whatever happens."""
        self.log.warning("alert", severity=severity, title=title, detail=detail)
        msg = Alert(
            ts=utcnow(),  # wall time by design: ops_api ages and delivers alerts on the wall clock
            severity=severity,
            source=self.name,
            title=title,
            detail=detail,
            dedup_key=dedup_key or f"{self.name}:{title}",
        )
        try:
            await self.bus.publish(subjects.alert(severity), msg)
        except Exception as exc:
            self.log.error("alert publish failed", error=str(exc))

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A background task that stops the service if it dies unexpectedly (fail closed)."""
        task = asyncio.create_task(coro, name=name)

        def _done(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None and self.bus.fatal is not None and not self.bus.fatal.done():
                self.log.error("background task died", task=name, error=repr(exc))
                self.bus.fatal.set_result(exc)

        task.add_done_callback(_done)
        self.tasks.append(task)
        return task


async def _heartbeat_loop(rt: Runtime, app: ServiceApp) -> None:
    interval = rt.settings.monitoring.heartbeat_interval_s
    subject = subjects.heartbeat(rt.name)
    while True:
        status, detail = app.health()
        # validated like any message: an app's health() outside Heartbeat's statuses fails here, loudly
        shard_info = getattr(app, "shard_info", None)
        writer_epoch = getattr(app, "writer_epoch", None)
        hb = Heartbeat.model_validate(
            {
                # wall time by design: a heartbeat says the process is alive now (watchers compute when it
                # began from ts - uptime_s and compare with their own launch time), whatever clock it trades on
                "ts": utcnow(),
                "service": rt.name,
                "instance": rt.instance,
                "status": status,
                "uptime_s": time.monotonic() - rt.started_monotonic,
                "counters": dict(rt.metrics.totals),
                "detail": detail,
                "metrics_port": rt.metrics_port,
                "model": app.served_model() if hasattr(app, "served_model") else None,
                "shard": shard_info() if shard_info is not None else None,
                "writer_epoch": writer_epoch() if writer_epoch is not None else None,
            }
        )
        if rt.bus.connected:
            try:
                await rt.bus.publish(subject, hb)
            except Exception as exc:
                rt.log.warning("heartbeat publish failed", error=str(exc))
        await asyncio.sleep(interval)


async def _connect_with_retry(
    what: str, log: Logger, attempt: Callable[[], Awaitable[T]], deadline_s: float = 60.0
) -> T:
    """Retry a start-up connection with backoff (0.2 s doubling to 5 s, for `deadline_s`); only a temporary
    error is retried (a configuration error never is)."""
    retrying = connect_retrying(
        TemporaryError,
        first_s=0.2,
        max_s=5.0,
        deadline_s=deadline_s,
        on_retry=lambda exc, wait: log.warning(
            f"{what} not ready; retrying", error=str(exc), retry_in_s=round(wait, 3)
        ),
    )
    return await retrying(attempt)


def check_settings(app: ServiceApp, settings: BotSettings) -> None:
    """Refuse to start on settings the service cannot run with (a ConfigurationError names the key)."""
    if not settings.nats.url:
        raise ConfigurationError("nats.url", "empty; set NATS_URL or start through `make run`")
    if app.needs_db and not settings.database.url.get_secret_value():
        raise ConfigurationError("database.url", "empty; set DATABASE_URL or start through `make run`")
    if getattr(app, "needs_exchange_keys", False) and settings.live_keys_missing():
        raise ConfigurationError(
            "live.api_key",
            "mode: live needs BNML_LIVE__API_KEY and BNML_LIVE__API_SECRET in the environment",
        )


@asynccontextmanager
async def running(
    app: ServiceApp,
    settings: BotSettings,
    *,
    clock: Clock,
    metrics: ServiceMetrics,
    log: Logger,
    metrics_port: int | None = None,
) -> AsyncIterator[Runtime]:
    """The service started on its runtime, for as long as the `async with` body runs; then stopped in order.

    The one place a Runtime is built: the process entry (`run_service`) runs its service through it, and so
    does the in-process test harness (tests/kit/harness.py) with a test clock, so both start the same way:
    connect NATS and provision streams, migrate and open the pool, `app.start`, heartbeat. On leaving (normally
    or by an exception, which propagates): the app's `stop`, its tasks cancelled, NATS drained, the pool closed.
    Process matters (settings loading, /metrics serving, signal handlers, exit codes) stay in `run_service`."""
    bus = Bus(
        settings.nats.url,
        app.name,
        metrics,
        user=settings.nats.user,
        password=settings.nats.password.get_secret_value(),
    )
    pool: Pool | None = None
    rt: Runtime | None = None
    try:
        await bus.connect()
        await bus.ensure_streams(replicas=settings.nats.replicas_for)
        if app.needs_db:
            url = settings.database.url.get_secret_value()

            async def _db() -> Pool:
                try:
                    await migrate_async(url)
                except Exception as exc:
                    raise TemporaryError(f"migrations failed: {type(exc).__name__}: {exc}") from exc
                return await open_pool(
                    url,
                    min_size=settings.database.pool_min,
                    max_size=settings.database.pool_max,
                    name=app.name,
                )

            pool = await _connect_with_retry("database", log, _db)
        rt = Runtime(
            name=app.name,
            settings=settings,
            metrics=metrics,
            bus=bus,
            db_pool=pool,
            log=log,
            metrics_port=metrics_port,
            clock=clock,
        )
        await app.start(rt)
        rt.spawn(_heartbeat_loop(rt, app), "heartbeat")
        log.info("started", metrics_port=metrics_port, instance=rt.instance)
        yield rt
    finally:
        log.info("stopping")
        try:
            await asyncio.wait_for(app.stop(), STOP_TIMEOUT_S)
        except Exception as exc:
            log.warning("stop incomplete", error=repr(exc))
        if rt is not None:
            for t in rt.tasks:
                t.cancel()
        await bus.drain()
        if pool is not None:
            await pool.close()
        metrics.up.set(0)


async def run_service(app: ServiceApp, settings: BotSettings | None = None) -> int:
    """Run one service until SIGTERM/SIGINT (exit 0) or a fatal error (exit 1)."""
    log = configure_logging(app.name)
    try:
        settings = settings or load_settings()
        check_settings(app, settings)
    except ConfigurationError as exc:
        log.error("refusing to start", error=str(exc))
        print(f"{app.name}: {exc}", file=sys.stderr)
        return 2
    log.info("starting", mode=settings.mode, config=settings.effective())

    metrics = ServiceMetrics(app.name)
    section = getattr(settings, app.name, None)
    port_setting = getattr(section, "metrics_port", 0)
    port_env = os.environ.get(f"BNML_{app.name.upper()}__METRICS_PORT")
    port = int(port_env) if port_env is not None else port_setting
    shard = getattr(section, "shard", None)
    if port and shard is not None:
        port += SHARD_PORT_STEP * shard.index  # shards of one service side by side: 9102, 9202, 9302, ...
    metrics_port = metrics.serve(port)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)

    exit_code = 0
    try:
        async with running(
            app, settings, clock=clock_for(settings), metrics=metrics, log=log, metrics_port=metrics_port
        ) as rt:
            fatal = rt.bus.fatal
            assert fatal is not None
            stopper = asyncio.create_task(stop_event.wait())
            waiters: set[asyncio.Future[Any]] = {stopper, fatal}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if fatal in done:
                log.error("fatal error; stopping (fail closed)", error=repr(fatal.result()))
                exit_code = 1
            stopper.cancel()
    except ConfigurationError as exc:
        log.error("refusing to start", error=str(exc))
        print(f"{app.name}: {exc}", file=sys.stderr)
        exit_code = 2
    except Exception as exc:
        log.exception("service failed", error=repr(exc))
        exit_code = 1
    log.info("stopped", exit_code=exit_code)
    return exit_code


def main(app_factory: Callable[[], ServiceApp]) -> None:
    """Entry point used by every `services/<name>/__main__.py`."""
    sys.exit(asyncio.run(run_service(app_factory())))
