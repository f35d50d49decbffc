"""Contracts round-trip through JSON and reject what they do not define."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from libs.common import subjects
from libs.common.contracts import KillSwitchCommand, RiskVerdict, Signal, Tick

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_tick(**kw) -> Tick:
    base = dict(
        ts=NOW,
        symbol="BTC/USDT",
        bid=Decimal("100.1"),
        ask=Decimal("100.2"),
        last=Decimal("100.15"),
        volume=Decimal("0.5"),
    )
    return Tick(**{**base, **kw})


@pytest.mark.parametrize("model", list(subjects.CATALOG.values()))
def test_every_contract_forbids_unknown_fields_and_has_identity(model):
    schema = model.model_json_schema()
    assert schema.get("additionalProperties") is False
    assert {"id", "ts", "schema_version"} <= set(schema["properties"])


def test_tick_round_trips_through_json_with_decimals_intact():
    tick = make_tick(last=Decimal("60123.12345678"))
    again = Tick.model_validate_json(tick.model_dump_json())
    assert again == tick
    assert again.last == Decimal("60123.12345678")


def test_tick_rejects_unknown_field():
    data = make_tick().model_dump(mode="json") | {"surprise": 1}
    with pytest.raises(ValidationError, match="surprise"):
        Tick.model_validate(data)


def test_tick_rejects_crossed_book_and_naive_time():
    with pytest.raises(ValidationError, match="above ask"):
        make_tick(bid=Decimal("101"), ask=Decimal("100"))
    with pytest.raises(ValidationError):
        make_tick(ts=datetime(2026, 1, 1))


def test_contracts_are_frozen():
    tick = make_tick()
    with pytest.raises(ValidationError):
        tick.last = Decimal("1")  # type: ignore[misc]


def test_refused_verdict_needs_a_reason_and_approved_needs_a_size():
    common = dict(
        ts=NOW, signal_id="s" * 16, symbol="BTC/USDT", side="BUY", expires_at=NOW + timedelta(seconds=2)
    )
    with pytest.raises(ValidationError, match="reason"):
        RiskVerdict(approved=False, quantity=Decimal(0), price_limit=Decimal(0), **common)
    with pytest.raises(ValidationError, match="positive quantity"):
        RiskVerdict(approved=True, quantity=Decimal(0), price_limit=Decimal(1), **common)


def test_kill_switch_command_requires_a_reason():
    with pytest.raises(ValidationError):
        KillSwitchCommand(ts=NOW, action="engage", reason="", actor="me")


@given(
    price=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000000"), places=8),
    prob=st.floats(min_value=0, max_value=1),
)
def test_signal_round_trip_property(price, prob):
    sig = Signal(ts=NOW, symbol="ETH/USDT", side="BUY", probability=prob, model_version="m1", price=price)
    assert Signal.model_validate_json(sig.model_dump_json()) == sig


def test_subjects_use_exchange_symbol_form_and_match_wildcards():
    assert subjects.tick("BTC/USDT") == "md.tick.BTCUSDT"
    assert subjects.verdict("ETH/USDT") == "risk.verdict.ETHUSDT"
    assert subjects.alert("SEV-1") == "alert.sev1"
    assert subjects.matches(subjects.ALL_VERDICTS, "risk.verdict.BTCUSDT")
    assert not subjects.matches(subjects.ALL_SIGNALS, "drift.status")
    assert subjects.stream_for("risk.verdict.BTCUSDT").name == "VERDICTS"
    assert subjects.stream_for("md.tick.BTCUSDT") is None
    with pytest.raises(ValueError):
        subjects.tick("BTC.USDT*")
