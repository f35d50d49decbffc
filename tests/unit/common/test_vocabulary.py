"""The shared vocabulary is defined once in the contracts, and the copies that remain in files being
reshaped elsewhere (execution's core, until it imports these) say exactly the same."""

from __future__ import annotations

from typing import get_args

import pytest

from libs.common import contracts as c
from libs.common.contracts import Fill, OrderEvent, RiskVerdict, Signal


def test_order_statuses_split_into_open_and_terminal():
    assert set(c.OPEN_ORDER_STATUSES) | set(c.TERMINAL_ORDER_STATUSES) == set(c.ORDER_STATUSES)
    assert not set(c.OPEN_ORDER_STATUSES) & set(c.TERMINAL_ORDER_STATUSES)
    assert c.ORDER_STATUSES == get_args(c.OrderStatus)


def test_every_contract_uses_the_one_side():
    for model in (OrderEvent, Fill, RiskVerdict):
        assert model.model_fields["side"].annotation == c.Side, model.__name__
    assert set(get_args(Signal.model_fields["side"].annotation)) == {*get_args(c.Side), "HOLD"}


@pytest.mark.parametrize("verdict_id", ["v-" + "0" * 32, "x", "v-" + "f" * 60])
def test_client_order_id_rule_is_one_rule(verdict_id):
    from services.execution import core

    coid = c.client_order_id(verdict_id)
    assert c.CLIENT_ORDER_ID_RE.match(coid) and c.is_ours(coid) and len(coid) == 32
    assert core.client_order_id(verdict_id) == coid  # execution's copy, until it imports the contract's
    assert core.OPEN_STATUSES == c.OPEN_ORDER_STATUSES and core.TERMINAL_STATUSES == c.TERMINAL_ORDER_STATUSES
    assert core.CLIENT_ORDER_ID_PREFIX == c.CLIENT_ORDER_ID_PREFIX
    assert not c.is_ours("someone-else") and not c.is_ours(None) and not c.is_ours("")
