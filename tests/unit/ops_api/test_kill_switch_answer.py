"""When the answer to POST /kill-switch is ready: every acknowledgement in, and ops_api's own view updated."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from libs.common.contracts import KillSwitchAcknowledged
from libs.common.kill_switch import KillSwitchLatch
from services.ops_api.app import OpsState


def _state(command_id: str) -> tuple[OpsState, asyncio.Event]:
    rt: Any = None  # the answer's bookkeeping reads no runtime
    state = OpsState(rt=rt, latch=KillSwitchLatch())
    ev = state.ack_events[command_id] = asyncio.Event()
    return state, ev


def _ack(command_id: str, service: str) -> KillSwitchAcknowledged:
    return KillSwitchAcknowledged(
        ts=datetime(2026, 12, 6, tzinfo=UTC), command_id=command_id, service=service, engaged=True
    )


def test_the_answer_waits_for_ops_api_to_read_the_command_after_both_acks():
    state, ev = _state("c1")
    state.on_ack(_ack("c1", "risk"))
    state.on_ack(_ack("c1", "execution"))
    assert not ev.is_set()  # a GET now could still show the state before the command
    state.on_read("c1")
    assert ev.is_set()


def test_read_first_then_the_acks_and_other_commands_do_not_count():
    state, ev = _state("c1")
    state.on_read("c1")
    state.on_read("other")  # not in flight here: ignored
    state.on_ack(_ack("c1", "risk"))
    state.on_ack(_ack("other", "execution"))
    assert not ev.is_set()  # execution has not acknowledged c1
    state.on_ack(_ack("c1", "execution"))
    assert ev.is_set()
    assert state.read == {"c1"}
