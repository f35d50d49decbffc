"""Incident rules, alert gate, auth throttle, backup retention, postmortem skeleton (pure cores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.ops_api.alert_gate import AlertGate
from services.ops_api.auth import FailureThrottle, allows, role_for
from services.ops_api.backup import backup_name, major_of, manifest_problems, to_prune
from services.ops_api.incidents import IncidentBook, Rules
from services.ops_api.postmortem import render

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


# -- incidents ----------------------------------------------------------------------------------
def test_kill_switch_engage_opens_one_sev1_and_release_resolves_it():
    book = IncidentBook()
    (a,) = book.on_kill_switch("engage", "drill", "alice", at(0))
    assert (a.op, a.severity, a.kind) == ("open", "SEV-1", "kill_switch")
    (b,) = book.on_kill_switch("engage", "again", "bob", at(1))
    assert b.op == "note"
    (c,) = book.on_kill_switch("release", "done", "alice", at(2))
    assert c.op == "resolve" and book.open_keys == {}


def test_order_loop_opens_when_too_many_orders_on_one_symbol_in_the_window():
    book = IncidentBook(Rules(order_loop_max_orders=3, order_loop_window_s=60))
    acts = []
    for i in range(4):
        acts += book.on_order(f"c{i}", "BTC/USDT", "SUBMITTED", Decimal(1), Decimal(0), at(i))
    assert [a.kind for a in acts] == ["order_loop"] and acts[0].severity == "SEV-1"
    # the same order seen twice (redelivery) is not counted twice; spaced orders never loop
    spaced = IncidentBook(Rules(order_loop_max_orders=3, order_loop_window_s=60))
    for i in range(10):
        assert spaced.on_order(f"s{i}", "ETH/USDT", "SUBMITTED", Decimal(1), Decimal(0), at(i * 30)) == []
        assert spaced.on_order(f"s{i}", "ETH/USDT", "SUBMITTED", Decimal(1), Decimal(0), at(i * 30)) == []


def test_overfilled_order_is_incoherent_sev1():
    (a,) = IncidentBook().on_order("c1", "BTC/USDT", "FILLED", Decimal("1"), Decimal("1.5"), at(0))
    assert (a.kind, a.severity) == ("incoherent_orders", "SEV-1")


def test_one_fill_losing_more_than_the_threshold_is_abnormal_loss():
    book = IncidentBook(Rules(abnormal_loss_usdt=Decimal(100)))
    assert book.on_fill("BTC/USDT", Decimal("-99"), "c", at(0)) == []
    (a,) = book.on_fill("BTC/USDT", Decimal("-101"), "c", at(0))
    assert a.kind == "abnormal_loss"


def test_stale_data_opens_sev2_only_after_the_delay_and_fresh_resolves():
    book = IncidentBook(Rules(stale_incident_s=120))
    assert book.on_market_status("BTC/USDT", "stale", at(0)) == []
    assert book.tick(at(60)) == []
    (a,) = book.tick(at(121))
    assert (a.kind, a.severity) == ("stale_data", "SEV-2")
    assert book.tick(at(200)) == []  # already open
    (r,) = book.on_market_status("BTC/USDT", "fresh", at(300))
    assert r.op == "resolve"


def test_breaker_stuck_on_opens_sev2_and_clearing_resolves():
    book = IncidentBook(Rules(breaker_stuck_s=3600))
    book.on_breaker(True, "volatility", None, "ratio 3.1", at(0))
    assert book.tick(at(3599)) == []
    (a,) = book.tick(at(3600))
    assert a.kind == "breaker_stuck" and a.key == "volatility"
    (r,) = book.on_breaker(False, "volatility", None, "calm", at(4000))
    assert r.op == "resolve"


def test_alerts_map_to_incident_kinds_and_info_is_ignored():
    book = IncidentBook()
    assert book.on_alert("INFO", "signal", "model reloaded", "", "", at(0)) == []
    (m,) = book.on_alert(
        "SEV-2", "execution", "journal/exchange mismatch", "", "execution:mismatch:c1", at(0)
    )
    assert (m.kind, m.severity) == ("journal_mismatch", "SEV-1")
    (b,) = book.on_alert("SEV-3", "ops_api", "backup failed", "disk full", "ops_api:backup_failed", at(0))
    assert (b.kind, b.severity) == ("backup_failed", "SEV-3")
    (d,) = book.on_delivery("webhook", False, "503", at(1))
    assert (d.kind, d.severity, d.title) == ("alerting_down", "SEV-2", "alerting externe KO: webhook")
    (ok,) = book.on_delivery("webhook", True, "", at(2))
    assert ok.op == "resolve"


def test_open_incidents_loaded_at_start_are_not_reopened():
    book = IncidentBook()
    book.load_open([("kill_switch", "global", "SEV-1")])
    (a,) = book.on_kill_switch("engage", "x", "y", at(0))
    assert a.op == "note"


# -- alert gate ---------------------------------------------------------------------------------
def test_gate_dedups_within_the_window_and_lets_through_after():
    g = AlertGate(dedup_window_s=300, rate_limit_per_min=100)
    assert g.admit("k", "SEV-2", 0).deliver
    assert g.admit("k", "SEV-2", 299).reason == "duplicate"
    assert g.admit("other", "SEV-2", 299).deliver
    assert g.admit("k", "SEV-2", 301).deliver


def test_gate_drops_below_min_severity():
    g = AlertGate(min_severity="SEV-2")
    assert g.admit("k", "SEV-3", 0).reason == "below_min_severity"
    assert g.admit("k2", "SEV-1", 0).deliver


def test_rate_limit_is_per_channel_and_sev1_always_passes():
    g = AlertGate(rate_limit_per_min=2)
    assert [g.channel_allows("webhook", "SEV-2", t).deliver for t in (0, 1, 2)] == [True, True, False]
    assert g.channel_allows("email", "SEV-2", 2).deliver
    assert g.channel_allows("webhook", "SEV-1", 3).deliver
    assert g.channel_allows("webhook", "SEV-2", 61).deliver


@given(st.lists(st.floats(0, 600, allow_nan=False), max_size=200), st.integers(1, 10))
def test_no_channel_exceeds_its_rate_in_any_minute(times, limit):
    g = AlertGate(rate_limit_per_min=limit)
    sent = [t for t in sorted(times) if g.channel_allows("c", "SEV-2", t).deliver]
    for t in sent:
        assert sum(1 for s in sent if t <= s < t + 60) <= limit


# -- auth ---------------------------------------------------------------------------------------
def test_roles_from_tokens():
    assert role_for("op-token-123456", "op-token-123456", "view-token-1234") == "operator"
    assert role_for("view-token-1234", "op-token-123456", "view-token-1234") == "viewer"
    assert role_for("", "op-token-123456", "view-token-1234") is None
    assert role_for("nope", "op-token-123456", "view-token-1234") is None
    assert allows("operator", "viewer") and not allows("viewer", "operator") and not allows(None, "viewer")


def test_throttle_blocks_after_max_failures_then_expires():
    th = FailureThrottle(max_failures=3, window_s=60, block_s=30)
    assert th.failure("ip", 0).allowed and th.failure("ip", 1).allowed
    assert not th.failure("ip", 2).allowed
    assert not th.check("ip", 10).allowed and th.check("ip", 10).retry_after_s == 22
    assert th.check("other", 10).allowed
    assert th.check("ip", 33).allowed


def test_failures_outside_the_window_do_not_add_up():
    th = FailureThrottle(max_failures=3, window_s=60, block_s=30)
    for t in (0, 100, 200, 300):
        assert th.failure("ip", t).allowed


# -- backups ------------------------------------------------------------------------------------
def test_retention_keeps_the_newest_complete_backups():
    names = [backup_name(T0 + timedelta(hours=h)) for h in range(5)] + [
        "junk",
        "20260101T000000000000Z.partial",
    ]
    doomed = to_prune(names, 3)
    assert doomed == sorted(names[:5])[:2]
    assert to_prune(names[:2], 3) == []


@given(st.integers(0, 30), st.integers(1, 10))
def test_retention_never_prunes_the_newest(n, keep):
    names = [backup_name(T0 + timedelta(minutes=i)) for i in range(n)]
    doomed = to_prune(names, keep)
    assert len(names) - len(doomed) == min(n, keep)
    assert not (set(doomed) & set(sorted(names)[-keep:]))


def test_manifest_check_names_missing_and_altered_files():
    m = {"files": {"db.dump": {"sha256": "a"}, "models_current": {"sha256": "b"}}}
    assert manifest_problems(m, {"db.dump": "a", "models_current": "b"}) == []
    assert manifest_problems(m, {"db.dump": "x"}) == ["db.dump: checksum mismatch", "models_current: missing"]


def test_pg_tool_major_version():
    assert major_of("pg_dump (PostgreSQL) 16.2") == 16
    assert major_of("pg_restore (PostgreSQL) 14.11 (Ubuntu 14.11-0ubuntu0.22.04.1)") == 14


# -- postmortem ---------------------------------------------------------------------------------
def test_postmortem_has_every_section_and_the_events():
    md = render(
        {
            "id": 7,
            "severity": "SEV-1",
            "title": "kill switch engaged",
            "kind": "kill_switch",
            "key": "global",
            "opened_at": T0,
            "resolved_at": None,
        },
        [{"ts": T0, "source": "kill_switch", "summary": "engage by alice: drill"}],
        T0,
    )
    for section in ("## Timeline", "## Impact", "## Cause", "## Corrective action", "## Preventive action"):
        assert section in md
    assert "engage by alice: drill" in md and "not yet" in md
