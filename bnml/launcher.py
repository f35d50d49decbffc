"""The local launcher: embedded NATS + Postgres (unless configured), migrations, the five services, a live view.

`make run`, `bnml up` and `python -m scripts.run_bot` all end here. Ctrl-C (or SIGTERM) stops every
child and every server it started, in order, and leaves no process behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.text import Text

from bnml import ui
from bnml.embedded import (
    EmbeddedNats,
    EmbeddedNatsCluster,
    EmbeddedPostgres,
    ensure_nats_passwords,
    free_port,
    nats_config_file,
)
from libs.common.db import migrate
from libs.common.errors import ConfigurationError
from libs.common.kill_switch import key_usable
from libs.common.settings import PLACEHOLDER_PREFIX, BotSettings, config_path, load_settings, mask_url

SERVICE_ORDER = ("ops_api", "risk", "execution", "signal", "market_data")
RUN_DIR = Path("artifacts/run")
SUITE_FILE = RUN_DIR / "suite.json"
LOG_DIR = Path("artifacts/logs")


def _pdeathsig() -> None:
    """Child dies with SIGTERM if the launcher dies (no orphans even on SIGKILL of the launcher)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    started: float
    restarts: int = 0
    next_restart: float = 0.0


@dataclass
class Suite:
    settings: BotSettings
    config_file: Path
    env: dict[str, str] = field(default_factory=dict)
    nats: EmbeddedNats | None = None
    nats_cluster: EmbeddedNatsCluster | None = None
    cluster_size: int = 0  # `bnml up --nats-cluster N`: N embedded NATS nodes on loopback instead of one
    pg: EmbeddedPostgres | None = None
    children: dict[str, Child] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    # -- servers ----------------------------------------------------------------------------
    def start_servers(self) -> None:
        if nats_config_file():
            ensure_nats_passwords()
        nats_url = self.settings.nats.url
        db_url = self.settings.database.url.get_secret_value()
        if not nats_url and self.cluster_size:
            # the cluster's own store (artifacts/run/nats-cluster/node-<i>): never the single server's
            ports = [p if _port_free(p) else free_port() for p in range(4222, 4222 + self.cluster_size)]
            self.nats_cluster = EmbeddedNatsCluster(
                RUN_DIR / "nats-cluster", size=self.cluster_size, ports=ports, config_file=nats_config_file()
            ).start()
            nats_url = self.nats_cluster.url
            replicas = (
                self.settings.nats.replicas if self.settings.nats.replicas > 1 else min(3, self.cluster_size)
            )
            self.env["BNML_NATS__REPLICAS"] = str(replicas)
            self.info["nats_nodes"] = self.nats_cluster.urls
            say(
                f"started an embedded NATS cluster of {self.cluster_size} (JetStream, R{replicas} streams, "
                f"every write fsynced) at {nats_url}"
            )
        elif not nats_url:
            port = 4222 if _port_free(4222) else free_port()
            self.nats = EmbeddedNats(RUN_DIR / "nats", port=port, config_file=nats_config_file()).start()
            nats_url = self.nats.url
            say(f"started embedded NATS (JetStream) at {nats_url}")
        elif self.cluster_size:
            raise ConfigurationError(
                "nats.url",
                f"set ({nats_url}): --nats-cluster starts an embedded cluster only "
                "when no NATS is configured",
            )
        else:
            say(f"using NATS at {nats_url}")
        if not db_url:
            self.pg = EmbeddedPostgres(RUN_DIR / "postgres", port=self._pg_port()).start()
            db_url = self.pg.url
            say(f"started embedded Postgres at {db_url}")
        else:
            say(f"using Postgres at {mask_url(db_url)}")
        n = migrate(db_url)
        say(f"database migrated ({n} migration(s) applied)")
        self.env.update(NATS_URL=nats_url, DATABASE_URL=db_url)
        self.info.update(nats_url=nats_url, database_url=db_url, embedded_database=self.pg is not None)
        if nats_config_file():  # opt-in NATS auth: the CLI (kill switch) connects as the `ops` user
            self.info["nats_url"] = with_user(nats_url, "ops", ensure_nats_passwords()["ops"])

    def _pg_port(self) -> int:
        # Keep the same port across runs when possible (the journal persists in artifacts/run/postgres).
        saved = RUN_DIR / "postgres" / "port"
        if saved.exists():
            port = int(saved.read_text())
            if _port_free(port):
                return port
        port = 5433 if _port_free(5433) else free_port()
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(str(port))
        return port

    # -- tokens and ports -------------------------------------------------------------------
    def prepare_env(self) -> None:
        ops = self.settings.ops_api
        tokens = {}
        for role, value in (("operator", ops.operator_token), ("viewer", ops.viewer_token)):
            tok = value.get_secret_value()
            if tok.startswith(PLACEHOLDER_PREFIX):
                tok = secrets.token_urlsafe(24)  # a local run gets fresh tokens, written to suite.json (0600)
            tokens[role] = tok
        self.env["BNML_OPS_API__OPERATOR_TOKEN"] = tokens["operator"]
        self.env["BNML_OPS_API__VIEWER_TOKEN"] = tokens["viewer"]
        # the kill-switch release key (operator authority risk and execution verify): a local run without one
        # gets a fresh one, like the tokens, kept in suite.json (0600) for `bnml kill-switch release`
        release_key = self.settings.kill_switch.release_key.get_secret_value()
        if not key_usable(release_key):
            release_key = secrets.token_urlsafe(32)
        self.env["BNML_KILL_SWITCH__RELEASE_KEY"] = release_key
        api_port = ops.port if ops.port and _port_free(ops.port) else free_port()
        self.env["BNML_OPS_API__PORT"] = str(api_port)
        for name in SERVICE_ORDER:
            port = getattr(getattr(self.settings, name), "metrics_port", 0)
            if not port or not _port_free(port):
                port = free_port()
            self.env[f"BNML_{name.upper()}__METRICS_PORT"] = str(port)
        self.env["BNML_CONFIG"] = str(self.config_file)
        self.env.setdefault("BNML_LOG_FORMAT", "json")
        self.info.update(
            ops_api_url=f"http://{ops.host}:{api_port}",
            operator_token=tokens["operator"],
            viewer_token=tokens["viewer"],
            release_key=release_key,
            launcher_pid=os.getpid(),
            mode=self.settings.mode,
            metrics_ports={n: int(self.env[f"BNML_{n.upper()}__METRICS_PORT"]) for n in SERVICE_ORDER},
        )

    # -- children ---------------------------------------------------------------------------
    def spawn(self, name: str) -> Child:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = open(LOG_DIR / f"{name}.log", "ab")
        env = {**os.environ, **self.env}
        if nats_config_file():  # opt-in NATS auth: each service gets only its own credentials
            env = {k: v for k, v in env.items() if not (k.startswith("NATS_") and k.endswith("_PASSWORD"))}
            env.update(BNML_NATS__USER=name, BNML_NATS__PASSWORD=ensure_nats_passwords()[name])
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_pdeathsig,
        )
        log.close()
        child = self.children.get(name)
        if child:
            child.proc, child.started = proc, time.monotonic()
        else:
            child = self.children[name] = Child(name, proc, time.monotonic())
        return child

    def ensure_model(self) -> None:
        """A fresh clone has no trained model: train a small one first so signals can flow (seconds)."""
        from services.signal.train import ensure_model

        path = ensure_model(self.settings, progress=lambda text: say(f"model: {text}"))
        say(
            f"signal model: {path or 'none (live mode never trains one: signal holds until a gated model is promoted)'}"
        )

    def start_services(self) -> None:
        for name in SERVICE_ORDER:
            self.spawn(name)
        self.write_info()
        say("started " + ", ".join(f"{n} (pid {c.proc.pid})" for n, c in self.children.items()))

    def write_info(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.info["services"] = {n: c.proc.pid for n, c in self.children.items()}
        tmp = SUITE_FILE.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.info, f, indent=2)
        os.replace(tmp, SUITE_FILE)

    def supervise(self) -> None:
        """Restart a child that exited, with backoff (like a compose restart policy), and say so."""
        now = time.monotonic()
        for child in self.children.values():
            code = child.proc.poll()
            if code is None:
                continue
            if child.next_restart == 0.0:
                delay = min(30.0, 2 ** min(child.restarts, 5))
                child.next_restart = now + delay
                say(
                    f"!! {child.name} exited with code {code}; restarting in {delay:.0f}s "
                    f"(see {LOG_DIR / (child.name + '.log')})"
                )
            elif now >= child.next_restart:
                child.restarts += 1
                child.next_restart = 0.0
                self.spawn(child.name)
                self.write_info()

    def stop(self) -> None:
        say("stopping services...")
        for name in reversed(SERVICE_ORDER):
            c = self.children.get(name)
            if c and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for c in self.children.values():
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{c.name} did not stop in time; killing it")
                c.proc.kill()
                c.proc.wait(5)
        if self.pg:
            self.pg.stop()
            say("embedded Postgres stopped")
        if self.nats:
            self.nats.stop()
            say("embedded NATS stopped")
        if self.nats_cluster:
            self.nats_cluster.stop()
            say("embedded NATS cluster stopped")
        SUITE_FILE.unlink(missing_ok=True)
        say("all stopped")


def with_user(url: str, user: str, password: str) -> str:
    """Credentials in every URL of a (comma-separated) NATS URL list."""
    from libs.common.settings import split_urls

    return ",".join(u.replace("://", f"://{user}:{password}@", 1) for u in split_urls(url))


def say(text: str | Text) -> None:
    """One launcher line on stdout: `[bnml HH:MM:SS] text`, coloured only on a terminal (bnml/ui.py)."""
    line = Text(f"[bnml {time.strftime('%H:%M:%S')}] ", style="dim")
    line.append_text(text if isinstance(text, Text) else Text(text))
    ui.console().print(line)
    sys.stdout.flush()


def _status_line(info: dict) -> Text:
    try:
        r = httpx.get(
            info["ops_api_url"] + "/status",
            timeout=2,
            headers={"Authorization": f"Bearer {info['viewer_token']}"},
        )
        r.raise_for_status()
        s = r.json()
    except Exception as exc:
        return ui.styled(f"waiting for ops_api ({type(exc).__name__})", "yellow")
    return status_line_text(s)


def status_line_text(s: dict) -> Text:
    """The live view's one line from `/status`: mode, state, kill switch, counts, each service's status."""
    c = s["counts"]
    line = Text.assemble(
        f"{s['mode']} ",
        ui.styled(s["trading_state"]),
        " kill-switch=",
        ui.styled("ENGAGED" if s["kill_switch"]["engaged"] else "off"),
    )
    line.append(
        f" | ticks={c['ticks']} signals={c['signals']} approved={c['verdicts_approved']} "
        f"refused={c['verdicts_refused']} orders={c['orders']} fills={c['fills']} open={c['open_orders']} "
        f"dlq={c['dlq']} |"
    )
    for name, v in s["services"].items():
        line.append_text(Text.assemble(f" {name}:", ui.styled(v["status"])))
    return line


DEMO_EDGE_ENV = "BNML_SIGNAL__MIN_EXPECTED_EDGE_BPS"
DEMO_EDGE_BPS = "-1000"


def demo_rule_applies(settings: BotSettings, environ) -> bool:
    """The local demo (paper on synthetic data) opens the edge gate unless the user chose a value."""
    return (
        settings.mode == "paper"
        and settings.paper_market_data_mode == "synthetic"
        and DEMO_EDGE_ENV not in environ
    )


def run(config: str | None = None, status_every_s: float = 3.0, nats_cluster: int = 0) -> int:
    try:
        settings = load_settings(config)
    except ConfigurationError as exc:
        print(f"bnml: {exc}", file=sys.stderr)
        return 2
    if settings.mode == "live":
        say("LIVE mode: orders will reach Binance with real money")
    elif demo_rule_applies(settings, os.environ):
        # the newcomer's demo: synthetic prices and a synthetic bootstrap model that has no edge by construction,
        # so the shipped edge gate (0 bps) would make it abstain for ever; open it for this demo only (paper,
        # synthetic data, not set by the user), visibly. Live never does this, and never serves such a model.
        os.environ[DEMO_EDGE_ENV] = DEMO_EDGE_BPS
        settings = load_settings(config)
        say(
            f"demo: paper mode on synthetic data; the bootstrap model trades noise to show the plumbing "
            f"(edge gate opened: {DEMO_EDGE_ENV}={DEMO_EDGE_BPS}; set it yourself to override)"
        )
    if nats_cluster and settings.nats.url:
        print(
            f"bnml: --nats-cluster starts an embedded cluster, but nats.url is set ({settings.nats.url}); "
            "unset NATS_URL or drop the flag",
            file=sys.stderr,
        )
        return 2
    suite = Suite(settings=settings, config_file=config_path(config), cluster_size=nats_cluster)
    stopping = {"flag": False}

    def _stop(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        suite.prepare_env()
        suite.start_servers()
        suite.ensure_model()
        suite.start_services()
        say(
            f"ops API at {suite.info['ops_api_url']}; logs in {LOG_DIR}/; `bnml status --json` for the full view; "
            "Ctrl-C stops everything"
        )
        next_status = time.monotonic() + status_every_s
        while not stopping["flag"]:
            time.sleep(0.2)
            suite.supervise()
            if time.monotonic() >= next_status:
                say(_status_line(suite.info))
                next_status = time.monotonic() + status_every_s
    except Exception as exc:
        say(f"!! launcher failed: {type(exc).__name__}: {exc}")
        suite.stop()
        return 1
    suite.stop()
    return 0
