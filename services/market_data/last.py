"""Conflation at the source (pure): which ticks also go out on `md.last.<SYM>`.

Risk and execution need each symbol's newest price, not every tick: at 20,000 ticks/s, receiving every
tick costs each of them a third of a core in the NATS client alone. `md.last.<SYM>` carries the same
Tick, at most once per `interval_s` per symbol: a tick goes out at once when the symbol's last one left
at least `interval_s` ago; otherwise it is held, replaced by any newer one, and `due()` sends it once the
interval has passed. So a symbol's price on `md.last` is never more than about one interval behind.
"""

from __future__ import annotations


class LastTicks:
    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._sent_at: dict[str, float] = {}
        self._held: dict[str, bytes] = {}

    def offer(self, symbol: str, payload: bytes, now: float) -> bytes | None:
        """The payload to send on md.last now, or None (held until `due`)."""
        sent = self._sent_at.get(symbol)
        if sent is None or now - sent >= self.interval_s:
            self._sent_at[symbol] = now
            self._held.pop(symbol, None)
            return payload
        self._held[symbol] = payload
        return None

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """Held ticks whose symbol's interval has passed (each symbol's newest), to send now."""
        out = [(s, p) for s, p in self._held.items() if now - self._sent_at[s] >= self.interval_s]
        for s, _ in out:
            del self._held[s]
            self._sent_at[s] = now
        return out

    def forget(self, symbol: str) -> None:
        self._sent_at.pop(symbol, None)
        self._held.pop(symbol, None)
