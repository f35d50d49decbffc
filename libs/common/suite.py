"""Where a running local suite says how to reach it: `artifacts/run/suite.json`, written by the launcher
(`bnml up`, mode 0600), and the environment, which wins over the file.

In the kernel so that the operator tooling of a service (`services/ops_api/tooling.py`) and the `bnml`
command (`bnml/client.py`) read it the same way without a service importing `bnml`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUN_DIR = Path("artifacts/run")
SUITE_FILE = RUN_DIR / "suite.json"

# environment variable -> key of the suite description it overrides
_ENV_KEYS: tuple[tuple[str, str], ...] = (
    ("BNML_OPS_API_URL", "ops_api_url"),
    ("BNML_OPS_API__VIEWER_TOKEN", "viewer_token"),
    ("BNML_OPS_API__OPERATOR_TOKEN", "operator_token"),
    ("NATS_URL", "nats_url"),
    ("DATABASE_URL", "database_url"),
)


def suite_info(suite_file: Path = SUITE_FILE) -> dict[str, Any]:
    """URLs and tokens of the running suite. Env (`BNML_OPS_API_URL`, tokens, NATS_URL) wins over the file;
    a file left by a launcher that has died is ignored."""
    info: dict[str, Any] = {}
    if suite_file.exists():
        info = json.loads(suite_file.read_text())
        pid = info.get("launcher_pid")
        if pid and not Path(f"/proc/{pid}").exists():
            info = {}  # stale file from a launcher that died
    for var, key in _ENV_KEYS:
        if os.environ.get(var):
            info[key] = os.environ[var]
    return info
