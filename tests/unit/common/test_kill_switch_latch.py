"""The kill-switch latch: order (a command older than the one applied never changes it) and authority (a
release without operator authority never opens it), over random interleavings of engages, releases,
garbage, late reads and lost connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.contracts import KillSwitchCommand
from libs.common.errors import InvalidInputError
from libs.common.kill_switch import KillSwitchLatch, authority_payload, check_authority, key_usable, sign

KEY = "unit-test-release-key-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cmd(action: str, i: int = 0, signed: bool = True, key: str = KEY) -> KillSwitchCommand:
    c = KillSwitchCommand(ts=T0 + timedelta(seconds=i), action=action, reason=f"r{i}", actor="test")
    return sign(c, key) if signed and action == "release" else c


def latch() -> KillSwitchLatch:
    return KillSwitchLatch(release_key=KEY)


# -- authority ------------------------------------------------------------------------------------
def test_a_signed_release_verifies_and_any_change_breaks_it():
    rel = cmd("release", 1)
    assert check_authority(rel, KEY).allowed
    assert not check_authority(rel, KEY + "x").allowed
    for change in (
        {"reason": "other"},
        {"actor": "mallory"},
        {"ts": rel.ts + timedelta(seconds=1)},
        {"id": "someotherid0"},
    ):
        assert not check_authority(rel.model_copy(update=change), KEY).allowed, change
    assert not check_authority(cmd("release", 2, signed=False), KEY).allowed
    assert check_authority(cmd("engage", 3), "").allowed  # anyone may stop trading


def test_the_authority_survives_the_wire_and_a_weak_key_signs_nothing():
    rel = cmd("release", 1)
    assert check_authority(KillSwitchCommand.model_validate_json(rel.model_dump_json()), KEY).allowed
    assert b"release" in authority_payload(rel)
    for weak in ("", "short", "change-me-release-key-long-enough"):
        assert not key_usable(weak)
        with pytest.raises(InvalidInputError):
            sign(cmd("release", 1, signed=False), weak)
        assert not check_authority(sign(cmd("release", 1, signed=False), KEY), weak).allowed


def test_an_unsigned_release_changes_nothing_and_a_signed_one_releases():
    la = latch()
    la.on_command(cmd("engage", 1), 1)
    assert la.blocks and la.known
    out = la.on_command(cmd("release", 2, signed=False), 2)
    assert out.outcome == "refused" and la.blocks and la.engaged
    assert la.on_command(cmd("release", 3), 3).applied and not la.blocks  # positive control


def test_an_unsigned_standing_release_read_at_start_keeps_it_blocking():
    la = latch()
    out = la.on_command(cmd("release", 1, signed=False), 5)
    assert out.outcome == "refused" and la.blocks and not la.known
    assert "authority" in (la.reason or "")


# -- order ----------------------------------------------------------------------------------------
def test_a_late_read_of_an_older_release_does_not_reopen_after_a_newer_engage():
    la = latch()
    la.on_command(cmd("release", 1), 1)
    assert not la.blocks
    la.on_command(cmd("engage", 2), 2)  # delivered live while a read is in flight
    out = la.on_command(cmd("release", 1), 1)  # the read lands: it saw seq 1
    assert out.outcome == "stale" and la.blocks
    assert la.on_empty().outcome == "stale" and la.blocks  # nor a read from before the first command


def test_a_late_engage_does_not_close_after_a_newer_release():
    la = latch()
    eng = cmd("engage", 1)
    la.on_command(eng, 1)
    la.on_command(cmd("release", 2), 2)
    assert la.on_command(eng, 1).outcome == "stale" and not la.blocks


def test_lost_connection_blocks_and_a_read_of_the_same_command_restores_it():
    la = latch()
    rel = cmd("release", 1)
    la.on_command(rel, 4)
    la.set_unknown("lost NATS connection")
    assert la.blocks
    assert la.on_command(rel, 4).outcome == "confirmed" and not la.blocks


def test_garbage_blocks_until_a_fresh_command_and_says_how_to_restore():
    la = latch()
    rel = cmd("release", 1)
    la.on_command(rel, 1)
    out = la.on_unreadable("not a valid KillSwitchCommand", 2, T0)
    assert out.changed and la.blocks and not la.known and la.as_dict()["engaged"] is True
    assert la.as_dict()["known"] is False and "release with operator authority" in la.as_dict()["reason"]
    assert la.as_dict()["since"] == T0.isoformat()
    assert la.on_command(rel, 1).outcome == "stale" and la.blocks  # a late read of the old release
    assert la.on_command(cmd("release", 3), 3).applied and not la.blocks


def test_an_engage_on_a_recreated_stream_still_wins():
    la = latch()
    la.on_command(cmd("release", 1), 57)
    eng = cmd("engage", 2)  # the stream was recreated: its sequence starts again at 1
    assert la.on_command(eng, 1).applied and la.blocks and la.seq == 1
    assert la.on_command(cmd("release", 3), 2).applied and not la.blocks


# -- the property ---------------------------------------------------------------------------------
@dataclass
class World:
    """A KILL_SWITCH stream and one subscriber's view of it: live deliveries in order, reads that return
    what was stored when they were served and land whenever (live and reads run on separate tasks)."""

    stream: list[object] = field(default_factory=list)  # KillSwitchCommand or b"garbage"; seq = index + 1
    stored: int = 0
    live: list[int] = field(default_factory=list)
    served: list[int] = field(default_factory=list)
    connected: bool = True


ACTIONS = st.lists(
    st.sampled_from(
        [
            "engage",
            "release",
            "unsigned",
            "garbage",
            "store",
            "deliver",
            "deliver",
            "serve",
            "land_first",
            "land_last",
            "disconnect",
            "reconnect",
        ]
    ),
    max_size=50,
)


def _give(la: KillSwitchLatch, w: World, seq: int) -> None:
    if seq == 0:
        la.on_empty()
        return
    item = w.stream[seq - 1]
    if isinstance(item, KillSwitchCommand):
        la.on_command(item, seq)
    else:
        la.on_unreadable("garbage", seq, T0)


@settings(max_examples=500, deadline=None)
@given(ACTIONS)
def test_no_older_command_changes_the_latch_and_no_unsigned_release_opens_it(actions):
    w, la = World(), latch()
    signed: set[str] = set()
    for i, act in enumerate(actions):
        before = (la.engaged, la.known, la.command_id)
        given_seq = None
        if act in ("engage", "release", "unsigned", "garbage"):
            item: object = (
                b"garbage"
                if act == "garbage"
                else cmd("release", i, signed=False)
                if act == "unsigned"
                else cmd(act, i)
            )
            w.stream.append(item)
            if act == "release":
                signed.add(item.id)  # type: ignore[attr-defined]
            if w.connected:
                w.live.append(len(w.stream))
        elif act == "store" and w.stored < len(w.stream):
            w.stored += 1
        elif act == "deliver" and w.live:
            given_seq = w.live.pop(0)
            w.stored = max(w.stored, given_seq - 1)
        elif act == "serve" and w.connected:
            w.served.append(w.stored)
        elif act in ("land_first", "land_last") and w.served:
            given_seq = w.served.pop(0 if act == "land_first" else -1)
        elif act == "disconnect" and w.connected:
            w.connected, w.live, w.served = False, [], []
            la.set_unknown("lost NATS connection")
        elif act == "reconnect" and not w.connected:
            w.connected = True
        if given_seq is not None:
            held = la.seq
            _give(la, w, given_seq)
            if given_seq < held or (given_seq == 0 and held):
                assert (la.engaged, la.known, la.command_id) == before, (act, given_seq, held)
        # authority: open only under a signed release, or when the stream was read empty
        if not la.blocks:
            assert la.command_id in signed or la.command_id is None, la
    # convergence: once everything is stored and read, the latch holds the newest item
    if w.stream:
        w.stored = len(w.stream)
        _give(la, w, w.stored)
        last = w.stream[-1]
        if isinstance(last, KillSwitchCommand) and (last.action == "engage" or last.id in signed):
            assert la.command_id == last.id and la.known
        elif not isinstance(last, KillSwitchCommand):
            assert la.blocks and not la.known
        else:  # an unsigned release last: whatever was held before, it did not open the latch for it
            assert la.command_id != last.id
