"""execution's shell modules are wiring (issue 21): no SQL (it is `journal.py`'s), no severity literal
(`rules.py` names each alert), no clock of their own (`rt.clock`), the shell about 250 lines or less, and
no broker reaching back into the service."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT

EXECUTION = ROOT / "services" / "execution"
WIRING = (
    "shell.py", "kill.py", "publish.py", "writer.py", "paper_broker.py", "broker.py",
    "live.py", "live_client.py", "live_apply.py", "live_reconcile.py",
)  # fmt: skip
LIVE = ("live.py", "live_client.py", "live_apply.py", "live_reconcile.py", "live_core.py")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|SET TRANSACTION)\b")
SEVERITY = re.compile(r"[\"'](SEV-[123]|INFO)[\"']")
OWN_CLOCK = re.compile(r"\btime\.(monotonic|time)\(|\butcnow\(|datetime\.now\(|^import time\b", re.M)
BACK_REFERENCE = re.compile(r"\bsvc\.|\bExecutionService\b")


@pytest.mark.parametrize("name", WIRING)
def test_a_wiring_module_has_no_sql_no_severity_no_clock_of_its_own_and_no_back_reference(name):
    text = (EXECUTION / name).read_text()
    assert not SQL.findall(text), f"{name}: SQL belongs in services/execution/journal.py"
    assert not SEVERITY.findall(text), f"{name}: severities belong in services/execution/rules.py"
    assert not OWN_CLOCK.findall(text), f"{name}: shells read time from rt.clock"
    if name != "shell.py":
        assert not BACK_REFERENCE.findall(text), f"{name}: a broker is given its ports, not the service"


def test_the_shell_is_about_250_lines_or_less():
    assert len((EXECUTION / "shell.py").read_text().splitlines()) <= 250


@pytest.mark.parametrize("name", LIVE)
def test_the_live_broker_is_split_by_responsibility_into_modules_under_350_lines(name):
    """Issue 21: the live broker was one 669-line module; the client, the journal side, the reconciliation
    and the pure decisions are each their own."""
    assert len((EXECUTION / name).read_text().splitlines()) < 350


def test_the_checks_can_fail():
    """Positive control: the same patterns find what they look for where it lives."""
    assert SQL.findall((EXECUTION / "journal.py").read_text())
    assert SEVERITY.findall((EXECUTION / "rules.py").read_text())
    assert OWN_CLOCK.findall((ROOT / "libs" / "common" / "clock.py").read_text())
    assert BACK_REFERENCE.findall("self.svc.held[symbol] = reason")
