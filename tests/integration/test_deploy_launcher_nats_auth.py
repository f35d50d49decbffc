"""The launcher's opt-in NATS authentication (BNML_NATS_CONFIG=deploy/nats/nats-server.conf).

Each spawned service gets only its own NATS user and password; the CLI's suite file gets the `ops` user; without
BNML_NATS_CONFIG the launcher behaves as before. (The servers themselves are exercised in
test_deploy_nats_permissions.py; here no process is started: Popen is replaced by a recorder.)
"""

from __future__ import annotations

import os

import pytest

import bnml.launcher as launcher
from bnml.embedded import NATS_USERS
from libs.common.settings import load_settings
from tests.unit.deploy.tooling import NATS_CONFIG

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, cmd, **kwargs):
        self.calls.append({"cmd": cmd, **kwargs})
        return type("P", (), {"pid": 4242, "poll": lambda self: None})()


@pytest.fixture
def suite(tmp_path, monkeypatch, database_url):
    monkeypatch.chdir(tmp_path)
    for user in NATS_USERS:  # set then delete: monkeypatch restores the original state (and drops what the
        monkeypatch.setenv(f"NATS_{user.upper()}_PASSWORD", "x")  # launcher generates) after the test
        monkeypatch.delenv(f"NATS_{user.upper()}_PASSWORD")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4999")  # external: the launcher starts no server
    monkeypatch.setenv("DATABASE_URL", database_url)
    rec = Recorder()
    monkeypatch.setattr(launcher.subprocess, "Popen", rec)
    return launcher.Suite(settings=load_settings(), config_file=launcher.config_path(None)), rec


def test_with_the_nats_config_each_service_gets_only_its_own_credentials(suite, monkeypatch):
    s, rec = suite
    monkeypatch.setenv("BNML_NATS_CONFIG", str(NATS_CONFIG))
    s.start_servers()
    for name in launcher.SERVICE_ORDER:
        s.spawn(name)
    passwords = {u: os.environ[f"NATS_{u.upper()}_PASSWORD"] for u in NATS_USERS}
    assert len(set(passwords.values())) == len(NATS_USERS) and all(p[0].isalpha() for p in passwords.values())
    for call in rec.calls:
        name = call["cmd"][-1].split(".")[-1]
        env = call["env"]
        assert env["BNML_NATS__USER"] == name and env["BNML_NATS__PASSWORD"] == passwords[name]
        assert not any(pw in env.values() for u, pw in passwords.items() if u != name), f"{name} sees others'"
    assert s.info["nats_url"] == f"nats://ops:{passwords['ops']}@127.0.0.1:4999"


def test_without_the_nats_config_nothing_changes(suite, monkeypatch):
    s, rec = suite
    monkeypatch.delenv("BNML_NATS_CONFIG", raising=False)
    s.start_servers()
    s.spawn("risk")
    assert "BNML_NATS__USER" not in rec.calls[0]["env"]
    assert s.info["nats_url"] == "nats://127.0.0.1:4999"
