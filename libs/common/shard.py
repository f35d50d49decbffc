"""Shards of the symbol universe (pure core): which instance owns a symbol, and who owns what right now.

The scheme (docs/scaling.md): an instance of a sharded service (signal, market_data) is configured with
`shard: {index, count}`; it owns a symbol when `shard_of(symbol, count) == index`, where `shard_of` is
CRC-32 (`zlib.crc32`, the IEEE polynomial) of the symbol's exchange id (`BTCUSDT`: the form on subjects, so
`BTC/USDT` and `BTCUSDT` are the same symbol) modulo `count`. It is deterministic across processes,
machines, Python versions and restarts (never Python's salted `hash`), needs no coordination and no
server configuration, and every symbol has exactly one owner among `count` instances: the shards are
disjoint and together cover the universe. Changing `count` moves symbols between shards (a modulo scheme,
not a consistent hash): resharding is a stop-and-start of every shard with the new count.

A shard that dies leaves its symbols without an owner until it is back: no other instance takes them over
(that is a later step, docs/scaling.md). `ownership` computes, from the instances' heartbeats, which
symbols have no live owner, which have two (a misconfiguration) and which shard indexes are missing.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_SHARDS = 256


def symbol_key(symbol: str) -> str:
    """The exchange id a symbol is hashed by: `BTC/USDT` and `BTCUSDT` give `BTCUSDT`."""
    return symbol.replace("/", "").upper()


def shard_of(symbol: str, count: int) -> int:
    """The index (0 .. count-1) of the shard that owns `symbol` among `count` shards."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard count must be 1..{MAX_SHARDS}, got {count}")
    return zlib.crc32(symbol_key(symbol).encode()) % count


@dataclass(frozen=True)
class Shard:
    """This instance's part of the universe: it owns the symbols with `shard_of(symbol, count) == index`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1..{MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be 0..{self.count - 1} (count {self.count}), got {self.index}"
            )

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, symbol: str) -> bool:
        return self.count == 1 or shard_of(symbol, self.count) == self.index

    def select(self, symbols: Iterable[str]) -> list[str]:
        """The symbols this shard owns, in their given order."""
        return [s for s in symbols if self.owns(s)]

    def label(self) -> str:
        return f"{self.index}/{self.count}"


class SubjectOwnership:
    """Does this shard own the symbol a subject names (`md.tick.BTCUSDT`, `md.candle.BTCUSDT.1m`)? The answer
    per subject is remembered, so the check on a message this shard does not own is one dict lookup."""

    def __init__(self, shard: Shard, token: int = 2):
        self.shard, self.token = shard, token
        self._cache: dict[str, bool] = {}

    def __call__(self, subject: str) -> bool:
        got = self._cache.get(subject)
        if got is None:
            parts = subject.split(".")
            got = self.shard.owns(parts[self.token]) if len(parts) > self.token else False
            if len(self._cache) < 1_000_000:
                self._cache[subject] = got
        return got


def partition(symbols: Iterable[str], count: int) -> list[list[str]]:
    """Every shard's symbols (index -> list, each in the given order)."""
    out: list[list[str]] = [[] for _ in range(count)]
    for s in symbols:
        out[shard_of(s, count)].append(s)
    return out


def digest(symbols: Iterable[str]) -> str:
    """A short fingerprint of a symbol set (order-free): two instances with the same digest own the same set."""
    h = hashlib.sha256("\n".join(sorted(set(symbols))).encode()).hexdigest()
    return h[:16]


# -- who owns what (for the status) ---------------------------------------------------------------
@dataclass(frozen=True)
class InstanceShard:
    """What one instance's last heartbeat said about its shard, and whether that heartbeat is recent."""

    instance: str
    index: int
    count: int
    symbols: tuple[str, ...]
    alive: bool
    age_s: float
    status: str = "ok"


def ownership(instances: Iterable[InstanceShard], sample: int = 20) -> dict[str, Any]:
    """One service's shards, from its instances' heartbeats.

    `unowned`: symbols some instance (alive or dead) reported owning that no live instance owns now (a dead
    shard's symbols: risk holds them, nothing signals them). `contested`: symbols two live instances claim
    (two instances with the same index, or ownership ignored: duplicate signals). `missing_shards`: indexes
    of the live count no live instance serves. `counts`: the shard counts the live instances were started
    with (more than one = a misconfiguration: some symbols have two owners or none)."""
    insts = sorted(instances, key=lambda i: (i.index, not i.alive, i.age_s))
    live = [i for i in insts if i.alive]
    known: set[str] = set()
    for i in insts:
        known.update(i.symbols)
    claims: dict[str, int] = {}
    for i in live:
        for s in set(i.symbols):
            claims[s] = claims.get(s, 0) + 1
    unowned = sorted(known - set(claims))
    contested = sorted(s for s, n in claims.items() if n > 1)
    counts = sorted({i.count for i in live})
    count = max(counts) if counts else (max((i.count for i in insts), default=1))
    missing = sorted(set(range(count)) - {i.index for i in live})
    served = {(i.index, i.count) for i in live}
    shown = [
        i for i in insts if i.alive or (i.index, i.count) not in served
    ]  # a restarted shard's old self goes
    return {
        "count": count,
        "counts": counts,
        "instances": [
            {
                "instance": i.instance,
                "index": i.index,
                "count": i.count,
                "alive": i.alive,
                "status": i.status if i.alive else "down",
                "heartbeat_age_s": round(i.age_s, 3),
                "symbols": len(i.symbols),
                "digest": digest(i.symbols),
                "sample": list(i.symbols[:sample]),
            }
            for i in shown
        ],
        "symbols": len(known),
        "unowned": len(unowned),
        "unowned_sample": unowned[:sample],
        "contested": len(contested),
        "contested_sample": contested[:sample],
        "missing_shards": missing,
        "ok": not unowned and not contested and not missing and len(counts) <= 1,
    }
