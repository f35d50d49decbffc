"""risk's shell modules are wiring (issue 21): no SQL (it is `store.py`'s), no severity literal (`alerts.py`
decides), no clock of their own (`rt.clock`), each about 250 lines or less, and composed, not inherited: no
class of theirs derives from another (the old mixin chain shared `self`) and none leaves a
`NotImplementedError` stub for another to fill."""

from __future__ import annotations

import ast
import re

import pytest

from tests.helpers import ROOT

RISK = ROOT / "services" / "risk"
WIRING = ("shell.py", "handlers.py", "upkeep.py", "writer.py", "ports.py")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|SET TRANSACTION)\b")
SEVERITY = re.compile(r"[\"'](SEV-[123]|INFO)[\"']")
OWN_CLOCK = re.compile(r"\btime\.(monotonic|time)\(|\butcnow\(|datetime\.now\(|^import time\b", re.M)


@pytest.mark.parametrize("name", WIRING)
def test_a_wiring_module_has_no_sql_no_severity_and_no_clock_of_its_own(name):
    text = (RISK / name).read_text()
    assert not SQL.findall(text), f"{name}: SQL belongs in services/risk/store.py"
    assert not SEVERITY.findall(text), f"{name}: severities belong in services/risk/alerts.py"
    assert not OWN_CLOCK.findall(text), f"{name}: shells read time from rt.clock"
    assert len(text.splitlines()) <= 250


def derived_classes_and_stubs(text: str) -> tuple[list[str], list[int]]:
    """The classes that derive from something, and the lines raising NotImplementedError."""
    tree = ast.parse(text)
    derived = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.bases]
    stubs = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Raise) and n.exc is not None and "NotImplementedError" in ast.unparse(n.exc)
    ]
    return derived, stubs


@pytest.mark.parametrize("name", WIRING)
def test_a_wiring_module_composes_objects_and_leaves_no_stub(name):
    derived, stubs = derived_classes_and_stubs((RISK / name).read_text())
    assert not derived, f"{name}: {derived} inherit; give each object its ports instead (ports.py)"
    assert not stubs, f"{name}: NotImplementedError stubs at lines {stubs}"


def test_the_service_is_one_class_over_objects():
    from services.risk.shell import RiskService

    assert RiskService.__mro__ == (RiskService, object)


def test_the_checks_can_fail():
    """Positive control: the same patterns find what they look for where it lives."""
    assert SQL.findall((RISK / "store.py").read_text())
    assert SEVERITY.findall((RISK / "alerts.py").read_text())
    assert OWN_CLOCK.findall((ROOT / "libs" / "common" / "clock.py").read_text())
    # the old shape: a mixin chain with a stub another mixin fills
    derived, stubs = derived_classes_and_stubs(
        "class Writer:\n    async def lost(self):\n        raise NotImplementedError\n"
        "class Upkeep(Writer): ...\nclass Handlers(Upkeep): ...\n"
    )
    assert derived == ["Upkeep", "Handlers"] and stubs == [3]
