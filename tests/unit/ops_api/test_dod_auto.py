"""The automatic daily DoD report's schedule (pure): which closed days are due, when the next run is."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from services.ops_api.dod_auto import announcement, due_days, next_run, reports_path

NOW = datetime(2026, 12, 3, 0, 2, tzinfo=UTC)


def test_every_closed_day_since_the_suite_first_ran_is_due_once():
    assert due_days(NOW, None, set()) == []  # never ran: nothing to report
    assert due_days(NOW, date(2026, 12, 3), set()) == []  # first ran today: today is not closed yet
    assert due_days(NOW, date(2026, 11, 30), set()) == [
        date(2026, 11, 30),
        date(2026, 12, 1),
        date(2026, 12, 2),
    ]
    assert due_days(NOW, date(2026, 11, 30), {date(2026, 12, 1)}) == [date(2026, 11, 30), date(2026, 12, 2)]
    assert due_days(NOW, date(2026, 1, 1), set(), catch_up=2) == [date(2026, 12, 1), date(2026, 12, 2)]


def test_the_next_run_is_the_next_utc_midnight_plus_the_grace():
    assert next_run(NOW, 300) == datetime(2026, 12, 3, 0, 5, tzinfo=UTC)  # today's run is still ahead
    assert next_run(datetime(2026, 12, 3, 0, 5, tzinfo=UTC), 300) == datetime(2026, 12, 4, 0, 5, tzinfo=UTC)
    assert next_run(datetime(2026, 12, 31, 23, 59, tzinfo=UTC), 0) == datetime(2027, 1, 1, tzinfo=UTC)


def test_the_announcement_says_pass_fail_or_no_data():
    assert announcement({"day": "2026-12-02", "status": "pass", "violations": []})[:2] == (
        "INFO",
        "DoD 2026-12-02: PASS",
    )
    sev, title, detail = announcement({"day": "2026-12-02", "status": "fail", "violations": ["a", "b"]})
    assert (sev, title, detail) == ("SEV-3", "DoD 2026-12-02: FAIL (2 violation(s))", "a; b")
    assert announcement({"day": "2026-12-02", "status": "no_data"})[1] == "DoD 2026-12-02: no data"


def test_the_default_reports_dir_follows_the_artifacts_dir():
    assert reports_path("artifacts/reports/dod", "var/bnml") == Path("var/bnml/reports/dod")
    assert reports_path("/var/dod", "artifacts") == Path("/var/dod")
