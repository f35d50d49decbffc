"""Shared helpers for the deploy tests: the deploy files, external binaries, an authenticated NATS server."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from bnml.embedded import NATS_USERS, EmbeddedNats

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
NATS_CONFIG = DEPLOY / "nats" / "nats-server.conf"
PROM_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = ("market_data", "signal", "risk", "execution", "ops_api")


def require_binary(name: str, package: str) -> str:
    """The path of `name`; in CI (CI=true) a missing binary fails the test, elsewhere it skips with the reason."""
    found = shutil.which(name)
    if found:
        return found
    reason = f"`{name}` not found: install Debian's `{package}` package (.ci/system-deps.sh does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def nats_passwords() -> dict[str, str]:
    # the form .env.example asks for: letters and digits, starting with a letter (nats-server parses it)
    return {user: "n" + secrets.token_hex(16) for user in NATS_USERS}


def password_env(passwords: dict[str, str]) -> dict[str, str]:
    return {f"NATS_{user.upper()}_PASSWORD": pw for user, pw in passwords.items()}


def start_authenticated_nats(data_dir: Path, passwords: dict[str, str]) -> EmbeddedNats:
    """deploy/nats/nats-server.conf on an embedded nats-server, the passwords given in its environment."""
    saved = {k: os.environ.get(k) for k in password_env(passwords)}
    os.environ.update(password_env(passwords))
    try:
        return EmbeddedNats(data_dir, config_file=NATS_CONFIG).start()
    finally:  # the server has read them; do not leak them into other tests' processes
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def url_with_user(url: str, user: str, password: str) -> str:
    return url.replace("://", f"://{user}:{password}@", 1)


def filled_env_file(path: Path, passwords: dict[str, str] | None = None) -> Path:
    """.env.example with every empty secret filled (as an operator would), written to `path`."""
    passwords = passwords or nats_passwords()
    out = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not value:
            user = key[len("NATS_") : -len("_PASSWORD")].lower() if key.startswith("NATS_") else ""
            if user in passwords:
                value = passwords[user]
            elif key == "ALERTMANAGER_WEBHOOK_URL":
                value = "http://127.0.0.1:9/alerts"  # one receiver is enough (the discard port: nobody hears)
            elif not key.startswith(("BNML_LIVE__", "ALERTMANAGER_")):
                value = "t" + secrets.token_hex(12)
        out.append(f"{key}{sep}{value}" if sep else line)
    path.write_text("\n".join(out) + "\n")
    return path


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def render_compose(env_file: Path) -> dict:
    """`docker-compose config` (Debian's docker-compose) with `env_file`, parsed; fails the test on error."""
    import subprocess

    import yaml

    binary = require_binary("docker-compose", "docker-compose")
    res = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DEPLOY,
    )
    assert res.returncode == 0, f"docker-compose config failed:\n{res.stderr}"
    return yaml.safe_load(res.stdout)


WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
LOCK = DEPLOY / "requirements.lock"


def build_image_venv(dest: Path) -> Path:
    """The image's Python environment in a clean virtualenv: deploy/requirements.lock installed exactly as the
    Dockerfile does (`--require-hashes --only-binary=:all:`), offline from the locked wheels `make wheelhouse`
    downloads, nothing else (no project install, no test tools, no pgserver). Returns its `python`."""
    import subprocess
    import sys

    if not (WHEELHOUSE / ".done").exists():
        reason = "no .venv/wheelhouse: run `make wheelhouse` (make test does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(dest)], check=True, timeout=120)
    python = dest / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    res = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--isolated",
            "--no-compile",
            "--find-links",
            str(WHEELHOUSE),
            "--require-hashes",
            "--only-binary=:all:",
            "-r",
            str(LOCK),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, f"the lock does not install in a clean venv:\n{res.stdout}\n{res.stderr}"
    return python
