"""risk's shell modules are wiring (issue 21): no SQL (it is `store.py`'s), no severity literal (`alerts.py`
decides), no clock of their own (`rt.clock`), and each about 250 lines or less."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT

RISK = ROOT / "services" / "risk"
WIRING = ("shell.py", "handlers.py", "upkeep.py", "writer.py")
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


def test_the_checks_can_fail():
    """Positive control: the same patterns find what they look for where it lives."""
    assert SQL.findall((RISK / "store.py").read_text())
    assert SEVERITY.findall((RISK / "alerts.py").read_text())
    assert OWN_CLOCK.findall((ROOT / "libs" / "common" / "clock.py").read_text())
