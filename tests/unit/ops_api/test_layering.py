"""services/ops_api stands on the kernel, not on the operators' command: importing every one of its modules
loads nothing from `bnml` (the suite file is read through `libs/common/suite.py`)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

_PROBE = """
import importlib, pkgutil, sys
import services.ops_api as pkg
for m in pkgutil.walk_packages(pkg.__path__, "services.ops_api."):
    if not m.name.endswith("__main__"):  # the entry point starts the service
        importlib.import_module(m.name)
{extra}
print(",".join(sorted(n for n in sys.modules if n == "bnml" or n.startswith("bnml."))))
"""


def _bnml_modules_loaded(extra: str = "") -> str:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(extra=extra)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def test_ops_api_imports_nothing_from_bnml():
    assert _bnml_modules_loaded() == ""


def test_the_probe_sees_a_bnml_import():
    # positive control: the same probe does report bnml once something imports it
    assert "bnml.client" in _bnml_modules_loaded("import bnml.client")


def test_the_launcher_writes_the_file_the_kernel_reads():
    from bnml.launcher import SUITE_FILE as written
    from libs.common.suite import SUITE_FILE as read

    assert written == read


def test_database_url_of_a_running_suite_comes_from_the_suite_file(tmp_path, monkeypatch):
    import json

    from libs.common import suite
    from services.ops_api.tooling import resolve_database_url

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    suite.RUN_DIR.mkdir(parents=True)
    (tmp_path / suite.SUITE_FILE).write_text(json.dumps({"database_url": "postgresql://from-suite-file/db"}))
    assert resolve_database_url() == "postgresql://from-suite-file/db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/db")
    assert resolve_database_url() == "postgresql://from-env/db"
