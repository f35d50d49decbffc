"""`bnml migrate` (compose's one-shot `migrate` service): exit codes compose's depends_on relies on."""

from __future__ import annotations

import os
import subprocess
import sys

from bnml.embedded import free_port
from tests.unit.deploy.tooling import ROOT


def run_migrate(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BNML_") and k not in ("DATABASE_URL", "NATS_URL")
    }
    env.update(DATABASE_URL=database_url, BNML_CONFIG=str(ROOT / "configs" / "bot.yaml"))
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", "migrate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_an_unreachable_database_is_retried_then_fails_nonzero():
    res = run_migrate(f"postgresql://bnml:pw@127.0.0.1:{free_port()}/bnml", "--wait", "1")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "retrying" in res.stderr and "unreachable" in res.stderr
    assert ":pw@" not in res.stderr and ":***@" in res.stderr, "the password is masked"


def test_no_database_url_is_a_configuration_error():
    res = run_migrate("")
    assert res.returncode == 2 and "database.url" in res.stderr
