"""Scenario 13: the ops API fuzzed from its own OpenAPI schema (schemathesis): no 5xx; every control
endpoint refuses a missing or wrong token; the audit table records every attempt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers import OPERATOR_TOKEN, VIEWER_TOKEN, ops_api_url

pytestmark = pytest.mark.faults


@pytest.fixture
def ops(services, tmp_path):
    services.configure(
        {
            "storage": {
                "artifacts_dir": str(tmp_path / "artifacts"),
                "backup": {"enabled": False, "dir": str(tmp_path / "backups")},
            },
        }
    )
    for name in ("risk", "execution"):
        services.start(name)
    return ops_api_url(services.start("ops_api"))


def _st() -> str:
    exe = Path(sys.executable).parent / "st"
    return str(exe) if exe.exists() else (shutil.which("st") or "st")


def test_fuzzing_the_ops_api_from_its_openapi_schema_finds_no_server_error(ops, tmp_path):
    token = OPERATOR_TOKEN  # the widest access: every endpoint is reached
    res = subprocess.run(
        [
            _st(),
            "run",
            f"{ops}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "12",
            "-H",
            f"Authorization: Bearer {token}",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_every_control_endpoint_refuses_missing_or_wrong_token_and_audits_it(ops, database_url):
    schema = httpx.get(f"{ops}/openapi.json", timeout=10).json()
    controls = [
        (path, method)
        for path, ops_ in schema["paths"].items()
        for method in ops_
        if method in ("post", "put", "patch", "delete")
    ]
    assert ("/kill-switch", "post") in controls and ("/backup", "post") in controls
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM api_audit").fetchone()[0]
    attempts = 0
    for path, method in controls:
        for headers in (
            {},
            {"Authorization": "Bearer not-the-token-at-all"},
            {"Authorization": f"Bearer {VIEWER_TOKEN}"},
        ):
            r = httpx.request(
                method.upper(),
                f"{ops}{path}",
                headers=headers,
                timeout=10,
                json={"action": "engage", "reason": "fuzz"},
            )
            attempts += 1
            assert r.status_code in (401, 403, 429), (path, method, headers, r.status_code, r.text)
    with psycopg.connect(database_url) as conn:
        after = conn.execute("SELECT count(*) FROM api_audit").fetchone()[0]
        engaged = conn.execute("SELECT count(*) FROM kill_switch_audit").fetchone()[0]
    assert after - before >= attempts, f"{attempts} refused attempts, {after - before} audit rows"
    assert engaged == 0, "a refused request reached the bus"
