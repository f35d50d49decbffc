"""Risk's reconciliations (pure: what was read in, actions or values out; the shell reads and acts).

- the kill switch: the audit (Postgres), the latch and the standing command (the bus) must agree;
- positions: risk's book against execution's `positions`; a difference that persists over two checks alerts;
- the live exchange account: adopt the balances execution reconciled, or hold (account unknown);
- reservations: the journal's orders adopted after a (re)start, a takeover's hold, verdicts never journaled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from libs.common.contracts import KillSwitchCommand
from libs.common.kill_switch import check_authority
from services.risk.alerts import AlertAction, account_unknown, positions_disagree
from services.risk.core import RiskEngine
from services.risk.journal_view import ExchangeAccount, JournalOrder
from services.risk.reservations import Reservations

# -- the kill switch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """The newest row of `kill_switch_audit`."""

    command_id: str
    action: str
    reason: str
    actor: str
    ts: datetime


@dataclass(frozen=True)
class Reassert:
    """Engaged in the audit but not on the bus (the stream lost it): publish the engage again."""

    cmd: KillSwitchCommand


@dataclass(frozen=True)
class RefuseStanding:
    """A standing release without operator authority: recorded as refused, never audited as the state."""

    cmd: KillSwitchCommand
    reason: str


@dataclass(frozen=True)
class AuditStanding:
    """A command given while risk was down: audit it; acknowledge an engage; apply a release that is newer
    than the halt it would lift."""

    cmd: KillSwitchCommand
    ack: bool = False
    release: bool = False


def reassert_from_audit(last: AuditRecord | None, latch_engaged: bool) -> Reassert | None:
    if last is not None and last.action == "engage" and not latch_engaged:
        return Reassert(KillSwitchCommand(ts=last.ts, action="engage", reason=last.reason, actor=last.actor))
    return None


def standing_action(
    last: AuditRecord | None,
    standing: KillSwitchCommand | None,
    release_key: str,
    halted: bool,
    halted_since: datetime | None,
) -> RefuseStanding | AuditStanding | None:
    """The standing command against the newest audit row: nothing if there is none or it is the audited one."""
    if standing is None or (last is not None and last.command_id == standing.id):
        return None
    authority = check_authority(standing, release_key)
    if not authority.allowed:
        return RefuseStanding(standing, authority.reason)
    if standing.action == "engage":
        return AuditStanding(standing, ack=True)
    newer = halted and (halted_since is None or standing.ts > halted_since)
    return AuditStanding(standing, release=newer)


# -- positions ----------------------------------------------------------------------------------------


def held(positions: dict[str, Decimal]) -> dict[str, Decimal]:
    """Execution's positions as risk compares them: what is held (a closed row counts as none)."""
    return {s: q for s, q in positions.items() if q > 0}


@dataclass
class PositionWatch:
    """Risk's book and execution's positions may differ for a moment (a fill on its way); a difference on the
    same symbol at two checks in a row is one source being wrong, and risk does not guess which."""

    last: set[str] = field(default_factory=set)

    def check(self, mismatches: dict[str, tuple[Decimal, Decimal]]) -> AlertAction | None:
        persistent = {s: v for s, v in mismatches.items() if s in self.last}
        self.last = set(mismatches)
        if not persistent:
            return None
        detail = "; ".join(f"{s}: risk {a}, execution {b}" for s, (a, b) in sorted(persistent.items()))
        return positions_disagree(detail)


# -- the live exchange account --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRead:
    """What one read of the exchange account gave: the balances (None: none journaled), journaled fills risk
    has not applied yet, or why it could not be read."""

    account: ExchangeAccount | None = None
    unapplied: int = 0
    error: str = ""


@dataclass(frozen=True)
class AccountDecision:
    op: str  # adopt | wait | unknown
    why: str = ""
    alert: AlertAction | None = None
    known_again: bool = False


@dataclass
class AccountWatch:
    """Live: the book's cash and positions are the exchange balances while they are fresh; missing, stale or
    unreadable balances mean the account is unknown (every verdict refused). Alerts once per reason."""

    stale_after_s: float
    fresh: bool = False
    why: str = "not read yet"

    def decide(self, read: AccountRead) -> AccountDecision:
        why = f"balances unreadable: {read.error}" if read.error else ""
        acc = read.account
        if not why and acc is None:
            why = "no exchange balances journaled yet"
        elif not why and acc is not None and acc.age_s > self.stale_after_s:
            why = f"exchange balances {acc.age_s:.0f} s old (limit {self.stale_after_s:.0f} s)"
        elif not why and read.unapplied:
            return AccountDecision("wait")  # fills on their way to risk: adopt the next snapshot
        if why:
            alert = account_unknown(why) if why != self.why else None
            self.fresh, self.why = False, why
            return AccountDecision("unknown", why, alert)
        known_again = bool(self.why)
        self.fresh, self.why = True, ""
        return AccountDecision("adopt", known_again=known_again)


# -- reservations ---------------------------------------------------------------------------------------


def takeover_hold_s(
    prev_state_age_s: float | None, verdict_ttl_s: float, persist_interval_s: float
) -> float | None:
    """A writer persists every `persist_interval_s` while it decides: state this fresh means one was deciding
    moments ago, and its approvals can still reach the journal until they expire. Hold (account unknown)
    that long, then read the journal again. None: no hold."""
    if prev_state_age_s is None or prev_state_age_s >= verdict_ttl_s + 2 * persist_interval_s + 1.0:
        return None
    return verdict_ttl_s + 1.0


def adopt(engine: RiskEngine, orders: Iterable[JournalOrder], now: datetime) -> None:
    """Journal orders into the reservations: a verdict not reserved yet is reserved at its limit (or the last
    price), with the fills already applied; then its order's status and filled quantity are applied."""
    for o in orders:
        if o.verdict_id not in engine.reservations:
            price = o.price_limit or engine.book.price_of(o.symbol)
            engine.reservations.reserve(o.verdict_id, o.symbol, o.side, o.quantity, price, now)
            engine.reservations.by_verdict[o.verdict_id].applied = o.applied
        engine.on_order(o.verdict_id, o.client_order_id, o.status, o.filled, o.quantity)


def to_confirm(reservations: Reservations, now: datetime, all_open: bool) -> tuple[list[str], list[str]]:
    """(verdicts past their expiry with no order seen, verdicts to ask the journal about): the due ones, or
    with `all_open` every reservation (an order event lost on the way)."""
    due = reservations.unconfirmed(now)
    return due, ([r.verdict_id for r in reservations.values()] if all_open else due)


def settle(
    engine: RiskEngine, due: list[str], ask: list[str], rows: dict[str, JournalOrder], now: datetime
) -> None:
    """The journal's answer: rows adopted; a due verdict with no row was never journaled and is released."""
    adopt(engine, [rows[v] for v in ask if v in rows], now)
    for vid in due:
        if vid not in rows:
            engine.reservations.never_journaled(vid)
