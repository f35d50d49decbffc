"""The execution core: the gate, client order ids, the order state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from libs.common.contracts import RiskVerdict
from services.execution.core import (
    CLIENT_ORDER_ID_RE,
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    backoff_s,
    client_order_id,
    flatten_order_key,
    may_send,
    status_from_exchange,
    transition,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def verdict(**kw) -> RiskVerdict:
    base = dict(
        ts=NOW,
        signal_id="signal-0001",
        symbol="BTC/USDT",
        side="BUY",
        approved=True,
        quantity=Decimal("0.001"),
        price_limit=Decimal("50000"),
        expires_at=NOW + timedelta(seconds=2),
    )
    base.update(kw)
    return RiskVerdict(**base)


@given(st.text(min_size=1, max_size=200))
def test_client_order_id_is_deterministic_and_within_binance_format(verdict_id):
    coid = client_order_id(verdict_id)
    assert coid == client_order_id(verdict_id)
    assert CLIENT_ORDER_ID_RE.fullmatch(coid)
    assert len(coid) <= 36


def test_different_verdicts_get_different_client_order_ids():
    assert client_order_id("a" * 32) != client_order_id("b" * 32)
    assert client_order_id(flatten_order_key("cmd1", "BTC/USDT")) != client_order_id(
        flatten_order_key("cmd1", "ETH/USDT")
    )


def test_gate_allows_fresh_approved_verdict():
    assert may_send(verdict(), kill_switch_blocks=False, now=NOW).allowed


def test_gate_refuses_when_kill_switch_engaged_even_if_fresh():
    gate = may_send(verdict(), kill_switch_blocks=True, now=NOW)
    assert not gate.allowed and gate.reason == "kill_switch_engaged"


def test_gate_refuses_expired_verdict_at_the_expiry_instant():
    v = verdict()
    assert may_send(v, kill_switch_blocks=False, now=v.expires_at).reason == "verdict_expired"


def test_gate_refuses_when_not_writer_or_symbol_held():
    assert may_send(verdict(), kill_switch_blocks=False, now=NOW, is_writer=False).reason == "not_writer"
    assert (
        may_send(verdict(), kill_switch_blocks=False, now=NOW, symbol_held="unknown order").reason
        == "symbol_held"
    )


def test_gate_refuses_refused_verdict():
    v = verdict(approved=False, reasons=["breaker"], quantity=Decimal(0), price_limit=Decimal(0))
    assert may_send(v, kill_switch_blocks=False, now=NOW).reason == "not_approved"


def test_gate_refuses_a_verdict_no_fenced_risk_writer_stamped_where_required():
    unfenced = verdict()  # risk_epoch 0: no risk writer lock stood behind it
    assert may_send(unfenced, kill_switch_blocks=False, now=NOW).allowed  # paper's default: accepted
    gate = may_send(unfenced, kill_switch_blocks=False, now=NOW, require_risk_epoch=True)
    assert not gate.allowed and gate.reason == "unfenced_verdict"
    # positive control: the same verdict stamped by a risk writer passes
    assert may_send(verdict(risk_epoch=3), kill_switch_blocks=False, now=NOW, require_risk_epoch=True).allowed
    # the kill switch still wins first
    blocked = may_send(unfenced, kill_switch_blocks=True, now=NOW, require_risk_epoch=True)
    assert blocked.reason == "kill_switch_engaged"


def test_live_always_requires_a_fenced_risk_epoch_and_paper_only_when_configured():
    from services.execution.core import requires_risk_epoch

    assert requires_risk_epoch("live", True) and requires_risk_epoch("live", False)
    assert not requires_risk_epoch("paper", True) and requires_risk_epoch("paper", False)


def test_terminal_statuses_do_not_move_except_rejected_by_adoption():
    for status in ("FILLED", "CANCELLED"):
        for new in OPEN_STATUSES + TERMINAL_STATUSES:
            assert not transition(status, new).allowed
    assert not transition("REJECTED", "FILLED").allowed
    assert transition("REJECTED", "FILLED", adopting=True).allowed


def test_unknown_resolves_only_to_an_exchange_outcome():
    assert transition("SUBMITTED", "UNKNOWN").allowed
    assert transition("UNKNOWN", "FILLED").allowed
    assert not transition("UNKNOWN", "SUBMITTED").allowed
    assert not transition("ACCEPTED", "SUBMITTED").allowed
    assert transition("PARTIALLY_FILLED", "PARTIALLY_FILLED").allowed


def test_status_from_exchange_maps_ccxt_statuses():
    one = Decimal(1)
    assert status_from_exchange("open", Decimal(0), one) == "ACCEPTED"
    assert status_from_exchange("open", Decimal("0.5"), one) == "PARTIALLY_FILLED"
    assert status_from_exchange("closed", one, one) == "FILLED"
    assert status_from_exchange("canceled", Decimal("0.5"), one) == "CANCELLED"
    assert status_from_exchange("expired", Decimal(0), one) == "CANCELLED"
    assert status_from_exchange("rejected", Decimal(0), one) == "REJECTED"


def test_backoff_grows_and_is_capped():
    waits = [backoff_s(i, cap=5) for i in range(10)]
    assert waits == sorted(waits) and waits[-1] == 5 and waits[0] > 0
