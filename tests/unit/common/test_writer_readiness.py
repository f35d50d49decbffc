"""The heartbeat's readiness fact of a single-writer service (`writer_epoch`): set only while the instance
holds the lock and takes work, which is what the tests wait on instead of a log line."""

from __future__ import annotations

from types import SimpleNamespace

from services.execution.shell import ExecutionService
from services.risk.shell import RiskService


def test_risk_reports_its_epoch_only_as_a_subscribed_writer():
    risk = RiskService()
    assert risk.writer_epoch() is None  # not started
    seat = SimpleNamespace(seated=False, p=SimpleNamespace(engine=SimpleNamespace(epoch=3)))
    risk.seat = seat  # type: ignore[assignment]
    assert risk.writer_epoch() is None  # a standby
    seat.seated = True
    assert risk.writer_epoch() is None  # the lock taken, the state not re-read nor subscribed yet
    risk._taking_work = True
    assert risk.writer_epoch() == 3
    seat.seated = False  # lost the lock (the seat's `lose`)
    assert risk.writer_epoch() is None


def test_execution_reports_its_epoch_only_once_its_verdict_consumer_is_bound():
    ex = ExecutionService()
    assert ex.writer_epoch() is None  # not started
    ex.writer_lock = SimpleNamespace(epoch=7)  # type: ignore[assignment]
    assert ex.writer_epoch() is None  # a standby
    ex.writer = True
    assert ex.writer_epoch() is None  # the books open, the consumer not bound yet
    ex._taking_work = True
    assert ex.writer_epoch() == 7
    ex.writer = False
    assert ex.writer_epoch() is None
