"""Risk's reconciliations (services/risk/reconcile.py): kill switch, positions, the live account,
reservations after a restart or a takeover."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from libs.common.contracts import KillSwitchCommand
from libs.common.kill_switch import sign
from services.risk import reconcile
from services.risk.journal_view import ExchangeAccount, JournalOrder
from services.risk.reconcile import AccountRead, AccountWatch, AuditRecord, AuditStanding, PositionWatch
from tests.unit.risk.conftest import T0, make_engine

D = Decimal
KEY = "k" * 32


def cmd(action: str, ts=T0, key: str | None = None) -> KillSwitchCommand:
    c = KillSwitchCommand(ts=ts, action=action, reason="test", actor="op")
    return sign(c, key) if key else c


def audited(c: KillSwitchCommand) -> AuditRecord:
    return AuditRecord(c.id, c.action, c.reason, c.actor, c.ts)


# -- the kill switch ------------------------------------------------------------------------------
def test_an_engage_in_the_audit_the_bus_lost_is_reasserted():
    engage = cmd("engage")
    again = reconcile.reassert_from_audit(audited(engage), latch_engaged=False)
    assert again is not None and again.cmd.action == "engage" and again.cmd.reason == "test"
    assert reconcile.reassert_from_audit(audited(engage), latch_engaged=True) is None  # the bus has it
    assert reconcile.reassert_from_audit(audited(cmd("release")), latch_engaged=False) is None
    assert reconcile.reassert_from_audit(None, latch_engaged=False) is None


def test_a_standing_command_already_audited_or_none_needs_nothing():
    engage = cmd("engage")
    assert reconcile.standing_action(audited(engage), engage, KEY, False, None) is None
    assert reconcile.standing_action(None, None, KEY, False, None) is None


def test_an_engage_given_while_down_is_audited_and_acknowledged():
    engage = cmd("engage")
    assert reconcile.standing_action(None, engage, KEY, False, None) == AuditStanding(engage, ack=True)


def test_an_unauthorised_standing_release_is_refused_not_audited():
    release = cmd("release")  # no signature
    act = reconcile.standing_action(None, release, KEY, True, T0)
    assert isinstance(act, reconcile.RefuseStanding) and "authority" in act.reason
    forged = cmd("release", key="x" * 32)
    assert isinstance(reconcile.standing_action(None, forged, KEY, True, T0), reconcile.RefuseStanding)


def test_a_release_given_while_down_lifts_only_a_halt_older_than_itself():
    release = cmd("release", ts=T0 + timedelta(seconds=10), key=KEY)
    last = audited(cmd("engage"))
    assert reconcile.standing_action(last, release, KEY, True, T0) == AuditStanding(release, release=True)
    newer_halt = T0 + timedelta(seconds=20)
    assert reconcile.standing_action(last, release, KEY, True, newer_halt) == AuditStanding(release)
    assert reconcile.standing_action(last, release, KEY, False, None) == AuditStanding(release)  # not halted
    assert reconcile.standing_action(last, release, KEY, True, None) == AuditStanding(release, release=True)


# -- positions ------------------------------------------------------------------------------------
def test_a_position_mismatch_alerts_only_when_it_persists_over_two_checks():
    w = PositionWatch()
    gap = {"BTC/USDT": (D("0.1"), D("0"))}
    assert w.check(gap) is None  # first sight: a fill may be on its way
    a = w.check(gap)
    assert a is not None and a.severity == "SEV-2" and a.detail == "BTC/USDT: risk 0.1, execution 0"
    assert w.check({}) is None  # agreed again
    assert w.check(gap) is None  # a new gap starts over


def test_a_mismatch_moving_between_symbols_is_not_persistent():
    w = PositionWatch()
    assert w.check({"BTC/USDT": (D("1"), D("0"))}) is None
    assert w.check({"ETH/USDT": (D("1"), D("0"))}) is None
    a = w.check({"ETH/USDT": (D("2"), D("0")), "BTC/USDT": (D("1"), D("0"))})
    assert a is not None and a.detail == "ETH/USDT: risk 2, execution 0"


def test_held_drops_closed_rows():
    assert reconcile.held({"BTC/USDT": D("0.1"), "ETH/USDT": D("0")}) == {"BTC/USDT": D("0.1")}


# -- the live account -----------------------------------------------------------------------------
def test_fresh_balances_are_adopted_and_known_again_once():
    w = AccountWatch(stale_after_s=30)
    acc = ExchangeAccount({"USDT": D("1000")}, age_s=2)
    d = w.decide(AccountRead(acc))
    assert d.op == "adopt" and d.known_again and w.fresh
    assert w.decide(AccountRead(acc)).known_again is False


def test_missing_stale_or_unreadable_balances_mean_unknown_alerted_once_per_reason():
    w = AccountWatch(stale_after_s=30)
    d = w.decide(AccountRead(None))
    assert d.op == "unknown" and d.why == "no exchange balances journaled yet" and d.alert is not None
    assert w.decide(AccountRead(None)).alert is None  # same reason: no second alert
    old = w.decide(AccountRead(ExchangeAccount({"USDT": D("1")}, age_s=45)))
    assert old.op == "unknown" and old.why == "exchange balances 45 s old (limit 30 s)" and old.alert
    err = w.decide(AccountRead(error="OperationalError"))
    assert err.why == "balances unreadable: OperationalError" and not w.fresh


def test_unapplied_fills_wait_for_the_next_snapshot_without_changing_anything():
    w = AccountWatch(stale_after_s=30)
    d = w.decide(AccountRead(ExchangeAccount({"USDT": D("1")}, age_s=1), unapplied=2))
    assert d.op == "wait" and not w.fresh and w.why == "not read yet"
    stale = w.decide(AccountRead(ExchangeAccount({"USDT": D("1")}, age_s=99), unapplied=2))
    assert stale.op == "unknown"  # the age limit still applies


# -- reservations ---------------------------------------------------------------------------------
def test_takeover_hold_only_after_a_writer_decided_moments_ago():
    assert reconcile.takeover_hold_s(None, 10, 1) is None  # fresh database
    assert reconcile.takeover_hold_s(3.0, 10, 1) == 11.0
    assert reconcile.takeover_hold_s(12.9, 10, 1) == 11.0
    assert reconcile.takeover_hold_s(13.0, 10, 1) is None  # ttl + 2 persists + 1 s


def order(vid: str, status: str = "ACCEPTED", filled: str = "0", applied: str = "0") -> JournalOrder:
    return JournalOrder(
        vid, f"c-{vid}", "BTC/USDT", "BUY", D("0.01"), D("60000"), status, D(filled), D(applied)
    )


def test_adopt_reserves_journal_orders_once_with_their_applied_fills():
    e = make_engine()
    reconcile.adopt(e, [order("v1", "PARTIALLY_FILLED", filled="0.004", applied="0.004")], T0)
    r = e.reservations.by_verdict["v1"]
    assert r.open_quantity() == D("0.006") and r.client_order_id == "c-v1"
    reconcile.adopt(e, [order("v1", "PARTIALLY_FILLED", filled="0.004", applied="0")], T0)  # again: kept
    assert e.reservations.by_verdict["v1"].applied == D("0.004")


def test_settle_releases_due_verdicts_the_journal_never_had_and_adopts_the_rest():
    e = make_engine()
    for v in ("v1", "v2"):
        e.reservations.reserve(v, "BTC/USDT", "BUY", D("0.01"), D("60000"), T0)
    later = T0 + timedelta(seconds=1)
    due, ask = reconcile.to_confirm(e.reservations, later, all_open=False)
    assert sorted(due) == sorted(ask) == ["v1", "v2"]
    reconcile.settle(e, due, ask, {"v2": order("v2")}, later)
    assert "v1" not in e.reservations and e.reservations.by_verdict["v2"].status == "ACCEPTED"
    due, ask = reconcile.to_confirm(e.reservations, later, all_open=True)
    assert due == [] and ask == ["v2"]  # every open reservation, none due
