"""Accounting (pure core): balances per asset, positions per symbol at average cost, realized P&L net of fees.

Conventions (documented in docs, tested by property tests):
- A BUY's fee is capitalised into the position's cost (average cost includes fees); its realized P&L is 0.
- A SELL realizes `(price - average_cost) * quantity - fee`, in the quote asset, converted to USDT.
- A fee charged in the base asset reduces the quantity received (BUY) or adds to the quantity given (SELL);
  a fee in a third asset (BNB) is debited from that asset and valued in quote by the caller.
- Spot balances never go negative: `check_*` refuse first; `apply_fill` records what the exchange did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal("0")
Q8 = Decimal("0.00000001")


def split_symbol(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("/")
    return base, quote.split(":")[0]


@dataclass
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass
class Position:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # total cost of the quantity held, quote asset, fees included
    realized_pnl_usdt: Decimal = ZERO

    @property
    def average_cost(self) -> Decimal:
        return self.cost / self.quantity if self.quantity > 0 else ZERO


@dataclass(frozen=True)
class FillAccounting:
    """What one fill did to the books."""

    realized_pnl_usdt: Decimal
    fee_quote: Decimal
    position_quantity: Decimal
    average_cost: Decimal
    balance_changes: dict[str, Decimal]


@dataclass(frozen=True)
class Check:
    allowed: bool
    reason: str = ""


@dataclass
class Ledger:
    balances: dict[str, Balance] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)

    def balance(self, asset: str) -> Balance:
        return self.balances.setdefault(asset, Balance())

    def position(self, symbol: str) -> Position:
        return self.positions.setdefault(symbol, Position())

    # -- checks (spot balances never negative) ------------------------------------------------------
    def check_buy(self, symbol: str, quantity: Decimal, price: Decimal, fee_rate: Decimal) -> Check:
        _, quote = split_symbol(symbol)
        need = quantity * price * (1 + fee_rate)
        have = self.balance(quote).free
        if need > have:
            return Check(False, f"insufficient_balance: need {need.quantize(Q8)} {quote}, free {have}")
        return Check(True)

    def check_sell(self, symbol: str, quantity: Decimal) -> Check:
        base, _ = split_symbol(symbol)
        have = self.balance(base).free
        if quantity > have:
            return Check(False, f"insufficient_balance: sell {quantity} {base}, free {have}")
        return Check(True)

    def lock(self, asset: str, amount: Decimal) -> None:
        b = self.balance(asset)
        if amount > b.free:
            raise ValueError(f"cannot lock {amount} {asset}: free {b.free}")
        b.free -= amount
        b.locked += amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        b = self.balance(asset)
        amount = min(amount, b.locked)
        b.locked -= amount
        b.free += amount

    # -- fills --------------------------------------------------------------------------------------
    def apply_fill(
        self,
        symbol: str,
        side: str,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        fee_asset: str,
        *,
        fee_quote_value: Decimal | None = None,
        quote_usdt: Decimal = Decimal("1"),
        from_locked: Decimal = ZERO,
    ) -> FillAccounting:
        """Book one fill. `from_locked`: amount of the paying asset taken from `locked` (resting orders)."""
        base, quote = split_symbol(symbol)
        if fee_asset == quote:
            fee_quote = fee
        elif fee_asset == base:
            fee_quote = fee * price
        else:
            fee_quote = fee_quote_value if fee_quote_value is not None else ZERO
        pos = self.position(symbol)
        notional = quantity * price
        changes: dict[str, Decimal] = {}

        def add(asset: str, amount: Decimal) -> None:
            changes[asset] = changes.get(asset, ZERO) + amount

        realized_quote = ZERO
        if side == "BUY":
            received = quantity - fee if fee_asset == base else quantity
            pos.cost += notional + (fee_quote if fee_asset != base else ZERO)
            pos.quantity += received
            add(quote, -notional)
            add(base, received)
            if fee_asset == quote:
                add(quote, -fee)
        else:
            given = quantity + fee if fee_asset == base else quantity
            held = min(given, pos.quantity)
            basis = pos.cost * held / pos.quantity if pos.quantity > 0 else ZERO
            # Any quantity sold beyond the recorded position has no known cost: it realizes nothing.
            unknown = given - held
            proceeds = price * quantity
            realized_quote = proceeds - basis - unknown * price - (fee_quote if fee_asset != base else ZERO)
            pos.cost -= basis
            pos.quantity -= held
            if pos.quantity == 0:
                pos.cost = ZERO
            add(base, -given)
            add(quote, proceeds)
            if fee_asset == quote:
                add(quote, -fee)
        if fee_asset not in (base, quote):
            add(fee_asset, -fee)
        realized = realized_quote * quote_usdt
        pos.realized_pnl_usdt += realized
        for asset, delta in changes.items():
            b = self.balance(asset)
            if delta < 0 and from_locked > 0 and asset == (quote if side == "BUY" else base):
                take = min(from_locked, -delta, b.locked)
                b.locked -= take
                delta += take
            b.free += delta
        return FillAccounting(
            realized_pnl_usdt=realized,
            fee_quote=fee_quote,
            position_quantity=pos.quantity,
            average_cost=pos.average_cost,
            balance_changes=changes,
        )
