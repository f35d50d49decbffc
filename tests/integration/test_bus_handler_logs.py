"""A handler's log lines carry its message's subject and id, bound once by the bus (handlers pass neither)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from libs.common import subjects
from libs.common.contracts import Signal, utcnow
from libs.common.logging import current_handling

pytestmark = pytest.mark.integration


async def test_a_handler_runs_with_the_subject_and_msg_id_bound(bus):
    seen: list[dict] = []
    done = asyncio.Event()

    async def handler(msg: Signal, subject: str) -> None:
        seen.append(current_handling())
        done.set()

    subject = subjects.signal("BTC/USDT")
    await bus.subscribe(subject, Signal, handler)
    sig = Signal(
        ts=utcnow(), symbol="BTC/USDT", side="BUY", probability=0.7, model_version="t", price=Decimal("1")
    )
    await bus.publish(subject, sig)
    await asyncio.wait_for(done.wait(), 5.0)
    assert seen == [{"subject": subject, "msg_id": str(sig.id)}]
    assert current_handling() == {}  # unset once the handler is done
