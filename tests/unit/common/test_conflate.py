"""Conflation: the newest valid message per subject is kept; every payload is validated as it arrives,
and a bad one is dead-lettered at once and never replaces a good value."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from libs.common.bus import Bus
from libs.common.conflate import Conflated
from libs.common.contracts import Tick
from libs.common.errors import InvalidInputError

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)


def tick(symbol: str, last: str) -> bytes:
    return (
        Tick(
            ts=T0, symbol=symbol, bid=Decimal(last), ask=Decimal(last), last=Decimal(last), volume=Decimal(1)
        )
        .model_dump_json()
        .encode()
    )


def make() -> tuple[Conflated[Tick], list[tuple[str, str]], list[int]]:
    letters: list[tuple[str, str]] = []
    decoded = [0]

    def decode(model, subject, data):
        decoded[0] += 1
        return Bus.decode(model, subject, data)

    return Conflated(Tick, decode, lambda s, d, reason: letters.append((s, reason))), letters, decoded


def test_only_the_newest_message_is_returned():
    c, letters, decoded = make()
    for px in ("1", "2", "3"):
        c.put("md.tick.BTCUSDT", tick("BTC/USDT", px))
    c.put("md.tick.ETHUSDT", tick("ETH/USDT", "10"))
    assert decoded[0] == 4  # every payload is validated as it arrives
    assert c.latest("md.tick.BTCUSDT").last == Decimal("3")
    assert c.latest("md.tick.BTCUSDT").last == Decimal("3")
    assert sorted(t.symbol for t in c.drain()) == ["BTC/USDT", "ETH/USDT"]
    assert c.drain() == []  # nothing new since
    assert c.received == 4 and c.invalid == 0 and letters == []


def test_take_returns_a_subject_once_per_new_payload():
    c, _, _ = make()
    assert c.take("md.tick.BTCUSDT") is None
    c.put("md.tick.BTCUSDT", tick("BTC/USDT", "5"))
    assert c.take("md.tick.BTCUSDT").last == Decimal("5")
    assert c.take("md.tick.BTCUSDT") is None
    assert c.drain() == []


def test_an_invalid_payload_is_dead_lettered_at_once_and_the_last_good_value_kept():
    c, letters, _ = make()
    c.put("md.tick.BTCUSDT", tick("BTC/USDT", "5"))
    assert c.take("md.tick.BTCUSDT").last == Decimal("5")
    c.put("md.tick.BTCUSDT", b'{"not": "a tick"}')
    assert len(letters) == 1 and letters[0][0] == "md.tick.BTCUSDT" and "Tick" in letters[0][1]
    assert c.drain() == []  # the new payload is bad: nothing new to hand out
    assert c.latest("md.tick.BTCUSDT").last == Decimal("5")


def test_a_bad_payload_followed_by_a_good_one_is_still_dead_lettered():
    c, letters, _ = make()
    c.put("md.tick.BTCUSDT", b"junk")
    c.put("md.tick.BTCUSDT", tick("BTC/USDT", "6"))  # the newer good tick does not hide the bad one
    assert [s for s, _ in letters] == ["md.tick.BTCUSDT"] and c.invalid == 1
    assert [t.last for t in c.drain()] == [Decimal("6")]


def test_skip_forgets_what_is_new_but_keeps_the_latest():
    c, _, _ = make()
    c.put("md.tick.BTCUSDT", tick("BTC/USDT", "5"))
    c.skip()
    assert c.drain() == [] and c.take("md.tick.BTCUSDT") is None
    assert c.latest("md.tick.BTCUSDT").last == Decimal("5")  # still the newest price when asked


async def test_an_async_dead_letter_runs_in_the_background():
    published: list[str] = []

    async def dead_letter(subject: str, data: bytes, reason: str) -> None:
        published.append(subject)

    def decode(model, subject, data):
        raise InvalidInputError("bad")

    c: Conflated[Tick] = Conflated(Tick, decode, dead_letter)
    c.put("md.tick.X", b"junk")
    assert c.latest("md.tick.X") is None and published == []  # not published inside the callback
    await asyncio.sleep(0)
    assert published == ["md.tick.X"]
