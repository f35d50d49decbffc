"""The kill-switch latch every trading service holds, how a service reads the standing state, and the
operator authority a release must carry.

The standing state is the last `KillSwitchCommand` kept on `control.kill_switch` (a last-value stream,
KILL_SWITCH). A service that cannot read it treats the switch as engaged: unknown means engaged.

Order. Every command reaches a service with its stream sequence: live, through an ordered JetStream
consumer on KILL_SWITCH (`Bus.follow`), and by reading the stream's last message (at start-up, after a
reconnect, while a verdict waits for a known state). Live deliveries and reads run on different tasks,
so a read can land after newer commands were delivered; the latch applies a command only if its
sequence is higher than the one it holds, so a command older than the one applied never changes it.
Sequence, not command time: `ts` is stamped by whoever publishes, on clocks the latch cannot trust, and
the sequence is the server's own order (the one that decides what the standing state is). One
exception, in the safe direction only: an engage stamped later than the command held is applied even
with a lower sequence, so that the kill switch still wins after the stream was recreated (a wiped NATS
volume restarts the sequence at 1).

Authority. Anyone may engage. A release is applied only if it carries `authority`, an HMAC-SHA256 over
its id, time, action, reason, actor and flatten flag, made with the release key that operators' tools
hold (ops_api, `bnml kill-switch release`) and that risk and execution verify themselves. Having
credentials to publish on the bus is not enough to release.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from libs.common import subjects
from libs.common.contracts import KillSwitchCommand
from libs.common.errors import InvalidInputError

if TYPE_CHECKING:
    from libs.common.bus import Bus
    from libs.common.logging import Logger
    from libs.common.service import Runtime

MIN_KEY_CHARS = 16
KEY_PLACEHOLDER_PREFIX = "change-me"
RESTORE_HINT = (
    "restore it with a fresh command: engage (`python3 -m scripts.kill_switch --config configs/bot.yaml`)"
    " or release with operator authority (`bnml kill-switch release --reason ...`, or POST /kill-switch"
    " with the operator token)"
)


# -- operator authority ---------------------------------------------------------------------------
def key_usable(key: str) -> bool:
    """A release key that can sign and verify: long enough and not a placeholder."""
    return len(key) >= MIN_KEY_CHARS and not key.startswith(KEY_PLACEHOLDER_PREFIX)


def authority_payload(cmd: KillSwitchCommand) -> bytes:
    """What the authority covers; any change to these fields breaks it."""
    ts = cmd.ts.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(
        ["bnml-kill-switch-v1", cmd.id, ts, cmd.action, cmd.reason, cmd.actor, cmd.flatten],
        separators=(",", ":"),
    ).encode()


def _mac(cmd: KillSwitchCommand, key: str) -> str:
    return hmac.new(key.encode(), authority_payload(cmd), hashlib.sha256).hexdigest()


def sign(cmd: KillSwitchCommand, key: str) -> KillSwitchCommand:
    """The command with operator authority. Raises InvalidInputError if the key cannot sign."""
    if not key_usable(key):
        raise InvalidInputError(
            f"kill_switch.release_key: unset, a placeholder or shorter than {MIN_KEY_CHARS} "
            "characters; no release can be authorised"
        )
    return cmd.model_copy(update={"authority": _mac(cmd, key)})


@dataclass(frozen=True)
class Authority:
    allowed: bool
    reason: str


def check_authority(cmd: KillSwitchCommand, key: str) -> Authority:
    """May this command be applied? Engage always; release only with authority made with `key`."""
    if cmd.action == "engage":
        return Authority(True, "engage needs no authority")
    if not key_usable(key):
        return Authority(
            False, "release refused: no usable kill_switch.release_key here, so no release can be verified"
        )
    if not cmd.authority:
        return Authority(False, "release refused: it carries no operator authority")
    if not hmac.compare_digest(cmd.authority, _mac(cmd, key)):
        return Authority(
            False, "release refused: its operator authority does not verify (wrong key or altered command)"
        )
    return Authority(True, "operator authority verified")


# -- the latch ------------------------------------------------------------------------------------
Outcome = Literal["applied", "confirmed", "stale", "refused", "unreadable"]


@dataclass(frozen=True)
class LatchOutcome:
    """What the latch did with one input. `changed`: whether `blocks` or the standing command changed."""

    outcome: Outcome
    changed: bool
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


@dataclass
class KillSwitchLatch:
    """Pure state: engaged, unknown (treated as engaged) or released. Nothing releases it but a command
    with operator authority, and nothing older (by stream sequence) than what it holds changes it."""

    engaged: bool = True
    known: bool = False
    since: datetime | None = None
    reason: str | None = "kill-switch state not read yet"
    command_id: str | None = None
    release_key: str = field(default="", repr=False)
    seq: int = 0  # stream sequence of what the latch holds (a command, or something unreadable)
    held_ts: datetime | None = None  # command time of the command held

    @property
    def blocks(self) -> bool:
        """True when no order may go out."""
        return self.engaged or not self.known

    def on_command(self, cmd: KillSwitchCommand, seq: int) -> LatchOutcome:
        """A command delivered live or read, with its stream sequence."""
        if seq == self.seq and cmd.id == self.command_id:
            if self.known:
                return LatchOutcome("stale", False, "the command already applied, received again")
            was = self.blocks  # read again after a lost connection: the state is known again
            self.known, self.reason = True, (cmd.reason if self.engaged else None)
            return LatchOutcome("confirmed", was != self.blocks, "the standing command, read again")
        if seq <= self.seq and not self._later_engage(cmd):
            return LatchOutcome("stale", False, f"sequence {seq} is not newer than {self.seq}")
        verdict = check_authority(cmd, self.release_key)
        if not verdict.allowed:
            if not self.known:
                self.reason = (
                    f"standing command not applied: {verdict.reason}; treated as engaged; " + RESTORE_HINT
                )
            return LatchOutcome("refused", False, verdict.reason)
        was = self.blocks
        changed = cmd.id != self.command_id or not self.known or (cmd.action == "engage") != self.engaged
        self.engaged, self.known = cmd.action == "engage", True
        self.since, self.reason, self.command_id, self.held_ts = cmd.ts, cmd.reason, cmd.id, cmd.ts
        self.seq = (
            seq  # lower only for a later engage on a recreated stream: its sequence is the new baseline
        )
        return LatchOutcome("applied", changed or was != self.blocks, verdict.reason)

    def _later_engage(self, cmd: KillSwitchCommand) -> bool:
        return cmd.action == "engage" and self.held_ts is not None and cmd.ts > self.held_ts

    def on_unreadable(self, why: str, seq: int, now: datetime) -> LatchOutcome:
        """Something that does not decode, at `seq` (0: sequence unknown), live or read: when it is the
        newest thing on the subject, the standing state is unknown, so the latch blocks."""
        if seq and seq <= self.seq:
            return LatchOutcome("stale", False, f"sequence {seq} is not newer than {self.seq}")
        was = self.blocks and not self.known
        self.known, self.seq = False, max(self.seq, seq)
        self.since = now
        self.reason = f"unreadable kill-switch command ({why[:200]}); treated as engaged; " + RESTORE_HINT
        return LatchOutcome("unreadable", not was, self.reason)

    def on_empty(self) -> LatchOutcome:
        """A read found no command on the stream."""
        if self.seq == 0 and self.command_id is None:
            changed = self.blocks
            self.engaged, self.known, self.since, self.reason = False, True, None, None
            return LatchOutcome("applied", changed, "no kill-switch command was ever given")
        return LatchOutcome("stale", False, "the stream reads empty, but the latch holds a later state")

    def set_unknown(self, why: str) -> None:
        """Lost the bus or cannot read the state: block until it is read again."""
        self.known = False
        self.reason = why

    def as_dict(self) -> dict[str, Any]:
        """What operators see: the effective state (unknown reads engaged), since when and why."""
        return {
            "engaged": self.blocks,
            "known": self.known,
            "since": self.since.isoformat() if self.since else None,
            "reason": self.reason,
        }


# -- reading the standing state -------------------------------------------------------------------
async def read_standing(bus: Bus) -> KillSwitchCommand | None:
    """The standing command, or None if none was ever given. Raises TemporaryError if unreadable."""
    return await bus.last_value("KILL_SWITCH", subjects.kill_switch(), KillSwitchCommand)


async def refresh_latch(
    bus: Bus, latch: KillSwitchLatch, log: Logger, now: datetime | None = None
) -> LatchOutcome:
    """Read the standing state into the latch; on failure leave it blocking (unknown = engaged)."""
    try:
        cmd, seq = await bus.last_entry("KILL_SWITCH", subjects.kill_switch(), KillSwitchCommand)
    except InvalidInputError as exc:
        out = latch.on_unreadable(str(exc), getattr(exc, "seq", 0), now or datetime.now(UTC))
        log.error("standing kill-switch command unreadable; treating as engaged", error=str(exc)[:300])
        return out
    except Exception as exc:
        latch.set_unknown(f"cannot read kill-switch state: {exc}")
        log.error("kill switch state unreadable; treating as engaged", error=str(exc))
        return LatchOutcome("unreadable", True, str(exc))
    out = latch.on_empty() if cmd is None else latch.on_command(cmd, seq)
    log.info(
        "kill switch state read",
        engaged=latch.blocks,
        known=latch.known,
        outcome=out.outcome,
        seq=seq,
        reason=latch.reason,
    )
    return out


# -- what a trading service does with a refusal or an unreadable command -------------------------------
UNREADABLE_ALERT_KEY = "kill_switch:unreadable"


async def record_refusal(rt: Runtime, cmd: KillSwitchCommand, why: str) -> None:
    """A release without valid operator authority: refused (the latch did not move), audited, alerted."""
    rt.log.error("kill-switch release refused", command_id=cmd.id, actor=cmd.actor, why=why)
    try:
        async with rt.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO kill_switch_refusals (command_id, ts, action, reason, actor, refused_by, why)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (command_id, refused_by) DO NOTHING",
                (cmd.id, cmd.ts, cmd.action, cmd.reason[:500], cmd.actor[:100], rt.name, why[:500]),
            )
    except Exception as exc:  # the refusal stands; the alert below still tells operators
        rt.log.error("kill-switch refusal not audited", error=str(exc))
    await rt.alert(
        "SEV-2",
        "kill-switch release refused: no valid operator authority",
        f"{why}; command {cmd.id} by {cmd.actor!r}: the kill switch stays as it was",
        dedup_key=f"kill_switch:release_refused:{cmd.id}",
    )


async def alert_unreadable(rt: Runtime, latch: KillSwitchLatch) -> None:
    """The standing state became unreadable: trading is halted, and operators must hear it."""
    await rt.alert(
        "SEV-1",
        "kill switch state unknown: trading halted",
        latch.reason or "",
        dedup_key=UNREADABLE_ALERT_KEY,
    )
