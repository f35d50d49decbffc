"""Test helpers shared by every test area: service processes, config files, polling."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import yaml

from bnml.embedded import free_port
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import Heartbeat, Message, Tick

M = TypeVar("M", bound=Message)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"  # vendored market data (data/README.md)
OPERATOR_TOKEN = "test-operator-token-0123456789"
VIEWER_TOKEN = "test-viewer-token-0123456789"
RELEASE_KEY = "test-kill-switch-release-key-0123456789"  # operator authority over kill-switch releases


# -- services as real processes -----------------------------------------------------------------
async def publish_tick(bus: Bus, tick: Tick) -> None:
    """A tick as market_data sends it: on md.tick.<SYM> and, as that symbol's newest, on md.last.<SYM>."""
    await bus.publish(subjects.tick(tick.symbol), tick)
    await bus.publish(subjects.last(tick.symbol), tick)


def write_config(path: Path, overrides: dict | None = None) -> Path:
    """A test config: the project's bot.yaml with overrides merged in (dicts merge, other values replace)."""
    base = yaml.safe_load((ROOT / "configs" / "bot.yaml").read_text())

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    # tests write their artifacts (models, backups, reports) next to their config, never into the repo
    own = {
        "monitoring": {"heartbeat_interval_s": 0.2},
        "storage": {
            "artifacts_dir": str(path.parent / "artifacts"),
            "backup": {"dir": str(path.parent / "artifacts" / "backups")},
        },
    }
    cfg = merge(merge(base, own), overrides or {})
    path.write_text(yaml.safe_dump(cfg))
    return path


class ServiceProcess:
    """`python -m services.<name>`, the same command as compose and the launcher, with a log file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, label: str = ""):
        # `label` names a second instance of one service (`signal-1`): its own log file
        self.name, self.env, self.log_path = name, env, log_dir / f"{label or name}.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = (
            0.0  # wall-clock time of the launch (heartbeats from earlier processes are not ours)
        )
        self.instance = ""  # the runtime's instance id, from its first heartbeat (`wait_started`)

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")
        self.started_at, self.instance = time.time(), ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float = 30.0) -> ServiceProcess:
        """Ready when this process's first heartbeat is on the bus (sent once `start` has returned), not when a
        log line says so. (The log is read only to explain a failure.)"""

        def first(hb: dict) -> bool:
            if not self._mine(hb):
                return False
            self.instance = self.instance or hb["instance"]
            return True

        watch = HeartbeatWatch(
            self.env["NATS_URL"],
            self.name,
            first,
            user=self.env.get("BNML_NATS__USER", ""),
            password=self.env.get("BNML_NATS__PASSWORD", ""),
        ).start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if watch.seen.wait(0.05):
                    return self
                if self.proc and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-3000:]}"
                    )
            raise TimeoutError(f"{self.name} did not start in {timeout}s:\n{self.logs()[-3000:]}")
        finally:
            watch.stop()

    def _mine(self, hb: dict) -> bool:
        """A heartbeat from this process: its runtime began after our launch and, for a shard, its index. No
        slack: a runtime begins well after its launch (the interpreter starts, imports), while the previous
        instance's began before its first heartbeat, which came before this launch; with 50 ms of slack a
        process launched right after another's first heartbeat took that one for its own."""
        began = datetime.fromisoformat(hb["ts"]).timestamp() - float(hb["uptime_s"])
        if began < self.started_at:
            return False
        index = self.env.get(f"BNML_{self.name.upper()}__SHARD__INDEX")
        shard = hb.get("shard")
        return index is None or shard is None or int(shard["index"]) == int(index)

    async def wait_heartbeat(
        self, bus: Bus, where=None, timeout: float = 30.0, message: str = ""
    ) -> Heartbeat:
        """This process's next heartbeat that `where(hb)` accepts (any, without): its state from the bus."""

        def ours(hb: Heartbeat) -> bool:
            return self._mine(hb.model_dump(mode="json")) and (where is None or where(hb))

        try:
            return await wait_heartbeat(bus, self.name, timeout, where=ours)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no heartbeat {message or 'of ours'} in {timeout}s:\n{self.logs()[-3000:]}"
            ) from None

    async def wait_writer(self, bus: Bus, timeout: float = 30.0) -> Heartbeat:
        """Ready as the single writer (risk, execution): a heartbeat of ours with `writer_epoch` set, sent once it
        is subscribed and takes work, instead of a "writer lock acquired" / "risk ready" line in its log."""
        return await self.wait_heartbeat(
            bus, lambda hb: hb.writer_epoch is not None, timeout, "as the writer taking work"
        )

    @property
    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def stop(self, timeout: float = 15.0) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class HeartbeatWatch:
    """Watches `svc.heartbeat.<service>` on its own thread and loop (callers may be sync or inside a loop);
    `seen` is set at the first heartbeat `accept(heartbeat_dict)` takes."""

    def __init__(self, nats_url: str, service: str, accept, user: str = "", password: str = "") -> None:
        self.url, self.subject, self.accept = nats_url, subjects.heartbeat(service), accept
        self.auth = {"user": user, "password": password} if user else {}
        self.seen = threading.Event()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> HeartbeatWatch:
        self._thread.start()
        self._ready.wait(10)
        return self

    async def _run(self) -> None:
        import nats

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            nc = await nats.connect(
                servers=[u.strip() for u in self.url.split(",") if u.strip()],
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.1,
                **self.auth,
            )
        except Exception:
            self._ready.set()
            raise

        async def cb(msg) -> None:
            try:
                if self.accept(json.loads(msg.data)):
                    self.seen.set()
            except (ValueError, KeyError, TypeError):
                pass  # not a heartbeat we can read: not ours

        await nc.subscribe(self.subject, cb=cb)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


class ServiceFactory:
    def __init__(self, tmp_path: Path, nats_url: str, database_url: str):
        self.tmp_path = tmp_path
        self.nats_url = nats_url
        self.database_url = database_url
        self.config_path = write_config(tmp_path / "bot.yaml")
        self.started: list[ServiceProcess] = []
        self.extra_env: dict[str, str] = {}

    def configure(self, overrides: dict) -> None:
        write_config(self.config_path, overrides)

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
        env.update(
            NATS_URL=self.nats_url,
            DATABASE_URL=self.database_url,
            BNML_CONFIG=str(self.config_path),
            BNML_LOG_FORMAT="json",
            BNML_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            BNML_OPS_API__OPERATOR_TOKEN=OPERATOR_TOKEN,
            BNML_OPS_API__VIEWER_TOKEN=VIEWER_TOKEN,
            BNML_KILL_SWITCH__RELEASE_KEY=RELEASE_KEY,
            **{
                f"BNML_{n.upper()}__METRICS_PORT": "0"
                for n in ("market_data", "signal", "risk", "execution", "ops_api")
            },
        )
        if name == "ops_api":  # the test chooses the port, so it knows the URL (`ops_api_url`)
            env["BNML_OPS_API__PORT"] = str(free_tcp_port())
        env.update(self.extra_env)
        return env

    def start(
        self,
        name: str,
        *,
        wait: bool = True,
        env: dict[str, str] | None = None,
        label: str = "",
        timeout: float = 30.0,
    ) -> ServiceProcess:
        """Start `python -m services.<name>`. Two instances of one service need their own `label` (their log
        files) and their own settings through `env`, e.g. a signal shard:
        `env=shard_env("signal", 1, 2), label="signal-1"`."""
        proc = ServiceProcess(name, {**self.env(name), **(env or {})}, self.tmp_path, label)
        proc.start()
        self.started.append(proc)
        if wait:
            proc.wait_started(timeout)
        return proc

    def stop_all(self) -> None:
        for p in reversed(self.started):
            p.stop()


def shard_env(service: str, index: int, count: int) -> dict[str, str]:
    """The environment that makes an instance of `service` shard `index` of `count` (libs/common/shard.py)."""
    return {
        f"BNML_{service.upper()}__SHARD__INDEX": str(index),
        f"BNML_{service.upper()}__SHARD__COUNT": str(count),
    }


def writer_of(database_url: str, role: str) -> tuple[int, str] | None:
    """(epoch, holder instance) of the last process that took `role`'s single-writer lock (`writer_epochs`,
    written as the lock is taken): who holds it, and how many takings there were, from the database."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT epoch, holder FROM writer_epochs WHERE role = %s", (role,)).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def free_tcp_port() -> int:
    return free_port()


def processes_left_on(path, timeout: float = 10.0) -> list[list[str]]:
    """The command lines of processes still running on `path` (a test's directory: postgres daemonizes, so
    it is not a descendant to wait for), once they have had `timeout` to finish their shutdown (a fast
    shutdown takes well under a second): [] when nothing is left."""
    import psutil

    def left() -> list[list[str]]:
        return [
            p.info["cmdline"]
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and any(str(path) in part for part in p.info["cmdline"])
        ]

    deadline = time.monotonic() + timeout
    while (found := left()) and time.monotonic() < deadline:
        time.sleep(0.1)  # a poll's interval
    return found


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` (sync or async) until truthy; fail the test with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


async def recorded(bus: Bus, subject: str, model: type[M]) -> list[M]:
    """Every message of `model` on `subject` from now on, in arrival order (a list the subscription fills)."""
    got: list[M] = []

    async def on_msg(m: M, subj: str) -> None:
        got.append(m)

    await bus.subscribe(subject, model, on_msg)
    return got


async def barrier(bus: Bus, subject: str, marker, arrived, timeout: float = 10.0) -> None:
    """A marker barrier instead of a "let it land" sleep: publish `marker` on `subject` after the thing and wait
    until `arrived()` (the recorder holds it). One subscription hands its messages over in order, so what reached
    this connection on it before the marker (from a publisher that has flushed or exited) has been handled."""
    await bus.publish(subject, marker)
    await wait_until(arrived, timeout=timeout, message=f"the marker on {subject}")


async def tick_barrier(bus: Bus, *services: str, timeout: float = 10.0) -> None:
    """A marker barrier for ticks, instead of a "let the tick land" sleep: an unreadable marker published on
    md.last behind the ticks. Each of `services` takes md.last on one subscription, in order, and dead-letters
    what it cannot read as it arrives (`Conflated.put`); once its letter for the marker is out, everything
    published on md.last before it has been handled there (the ticks are its newest)."""
    import uuid

    from libs.common.contracts import DeadLetter
    from tests.kit.builders import MARKER_SYMBOL

    token = uuid.uuid4().hex
    waiting = set(services)
    got = asyncio.Event()

    async def on_letter(letter: DeadLetter, subject: str) -> None:
        if token in letter.payload:
            waiting.discard(letter.service)
            if not waiting:
                got.set()

    subject = subjects.last(MARKER_SYMBOL)
    sub = await bus.subscribe(subjects.dlq(subject), DeadLetter, on_letter)
    try:
        await bus.nc.flush()  # subscribed at the server before the marker goes out
        await bus.nc.publish(subject, json.dumps({"marker": token}).encode())
        try:
            await asyncio.wait_for(got.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{sorted(waiting)} did not dead-letter the tick marker in {timeout}s"
            ) from None
    finally:
        await sub.unsubscribe()
        if sub in bus._subs:
            bus._subs.remove(sub)


async def verdicts_settled(bus: Bus, durable: str = "execution") -> bool:
    """Execution's verdict consumer has nothing pending and nothing unacknowledged: every verdict published
    so far was decided (sent or refused), the effect a "nothing was sent" check waits for."""
    info = await bus.js.consumer_info("VERDICTS", durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def wait_heartbeat(bus: Bus, service: str, timeout: float = 15.0, where=None) -> Heartbeat:
    """The service's next heartbeat (the next one `where(hb)` accepts, when given): readiness and state from
    the bus, not from a log line."""
    from libs.common import subjects

    got: asyncio.Future[Heartbeat] = asyncio.get_running_loop().create_future()

    async def on_hb(hb: Heartbeat, subject: str) -> None:
        if not got.done() and (where is None or where(hb)):
            got.set_result(hb)

    sub = await bus.subscribe(subjects.heartbeat(service), Heartbeat, on_hb)
    try:
        return await asyncio.wait_for(got, timeout)
    finally:
        await sub.unsubscribe()
        if sub in bus._subs:
            bus._subs.remove(sub)


def ops_api_url(proc: ServiceProcess) -> str:
    """The URL of a started ops_api, from the port the test chose for it (`ServiceFactory.env`), not its log."""
    return f"http://127.0.0.1:{proc.env['BNML_OPS_API__PORT']}"
