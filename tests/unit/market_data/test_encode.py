"""The fast encoders write exactly what the contracts would (so consumers can't tell the difference)."""

from datetime import UTC, datetime
from decimal import Decimal

from libs.common.contracts import Candle, Tick
from services.market_data.encode import candle_json, fast_id, iso_ts, iso_ts_ms, tick_json


def test_tick_json_matches_the_contract_byte_for_byte():
    for now in (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)):
        for src_ts in (None, datetime(2021, 10, 1, tzinfo=UTC)):
            t = Tick(
                ts=now,
                symbol="BTC/USDT",
                bid=Decimal("60000.10"),
                ask=Decimal("60000.20"),
                last=Decimal("60000.10"),
                volume=Decimal("0.001200"),
                source="replay",
                source_ts=src_ts,
            )
            fast = tick_json(
                iso_ts(now),
                "BTC/USDT",
                "60000.10",
                "60000.20",
                "60000.10",
                "0.001200",
                "replay",
                iso_ts(src_ts) if src_ts else None,
                msg_id=t.id,
            )
            assert fast == t.model_dump_json().encode()
            assert Tick.model_validate_json(fast) == t


def test_candle_json_matches_the_contract_byte_for_byte():
    now = datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC)
    c = Candle(
        ts=now,
        symbol="ETH/USDT",
        timeframe="1m",
        open_time=datetime(2026, 1, 2, 3, 3, tzinfo=UTC),
        close_time=datetime(2026, 1, 2, 3, 3, 59, 999000, tzinfo=UTC),
        open=Decimal("1"),
        high=Decimal("2"),
        low=Decimal("0.5"),
        close=Decimal("1.5"),
        volume=Decimal("10"),
        source="synthetic",
    )
    ot = int(c.open_time.timestamp() * 1000)
    fast = candle_json(
        iso_ts(now),
        "ETH/USDT",
        "1m",
        iso_ts_ms(ot),
        iso_ts_ms(ot + 59_999),
        "1",
        "2",
        "0.5",
        "1.5",
        "10",
        "synthetic",
        msg_id=c.id,
    )
    assert fast == c.model_dump_json().encode()


def test_fast_ids_are_unique_and_valid():
    ids = {fast_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 for i in ids)
