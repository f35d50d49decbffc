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
