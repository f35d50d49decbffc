"""The kill-switch latch every trading service holds, and how a service reads the standing state.

The standing state is the last `KillSwitchCommand` kept on `control.kill_switch` (a last-value stream).
A service that cannot read it treats the switch as engaged: unknown means engaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from libs.common import subjects
from libs.common.contracts import KillSwitchCommand


@dataclass
class KillSwitchLatch:
    """Pure state: engaged, unknown (treated as engaged) or released. Nothing releases it but a command."""

    engaged: bool = True
    known: bool = False
    since: datetime | None = None
    reason: str | None = "kill-switch state not read yet"
    command_id: str | None = None

    @property
    def blocks(self) -> bool:
        """True when no order may go out."""
        return self.engaged or not self.known

    def apply(self, cmd: KillSwitchCommand) -> bool:
        """Apply a command; returns True if the state changed."""
        engaged = cmd.action == "engage"
        changed = engaged != self.engaged or not self.known
        self.engaged, self.known = engaged, True
        self.since, self.reason, self.command_id = cmd.ts, cmd.reason, cmd.id
        return changed

    def set_never_engaged(self) -> None:
        self.engaged, self.known, self.since, self.reason, self.command_id = False, True, None, None, None

    def set_unknown(self, why: str) -> None:
        """Lost the bus or cannot read the state: block until it is read again."""
        self.known = False
        self.reason = why

    def as_dict(self) -> dict:
        return {"engaged": self.blocks, "since": self.since.isoformat() if self.since else None,
                "reason": self.reason}


async def read_standing(bus) -> KillSwitchCommand | None:
    """The standing command, or None if none was ever given. Raises TemporaryError if unreadable."""
    return await bus.last_value("KILL_SWITCH", subjects.kill_switch(), KillSwitchCommand)


async def refresh_latch(bus, latch: KillSwitchLatch, log) -> None:
    """Read the standing state into the latch; on failure leave it blocking (unknown = engaged)."""
    try:
        cmd = await read_standing(bus)
    except Exception as exc:
        latch.set_unknown(f"cannot read kill-switch state: {exc}")
        log.error("kill switch state unreadable; treating as engaged", error=str(exc))
        return
    if cmd is None:
        latch.set_never_engaged()
    else:
        latch.apply(cmd)
    log.info("kill switch state read", engaged=latch.blocks, reason=latch.reason)

