"""services/ops_api stands on the kernel, not on the operators' command: no module of it imports `bnml`,
at the top or inside a function, and importing them all loads nothing from it (the suite file is read
through `libs/common/suite.py`)."""

from __future__ import annotations

import ast
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
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(extra=extra)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def _bnml_imports(source: str) -> list[int]:
    """Lines of every import of `bnml` in a module's source, wherever it stands (lazy ones included)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        if any(n == "bnml" or n.startswith("bnml.") for n in names):
            lines.append(node.lineno)
    return lines


def test_no_ops_api_module_names_bnml_in_an_import():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "services" / "ops_api").rglob("*.py"))
        for line in _bnml_imports(path.read_text())
    ]
    assert not offenders, "services/ops_api imports bnml:\n" + "\n".join(offenders)


def test_the_scan_sees_a_lazy_import():
    assert _bnml_imports("def f():\n    from bnml.client import suite_info\n    import bnml\n") == [2, 3]
    assert _bnml_imports("from libs.common.suite import suite_info\n") == []


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
