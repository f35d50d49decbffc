"""The shard scheme (libs/common/shard.py): disjoint, covering, stable; and who owns what from heartbeats."""

from __future__ import annotations

import io
import zlib

import pytest
from pydantic import ValidationError

from bnml import ui
from bnml.commands.suite import render_status
from libs.common.settings import BotSettings
from libs.common.settings.shard import ShardSettings
from libs.common.shard import InstanceShard, Shard, SubjectOwnership, digest, ownership, partition, shard_of
from services.market_data.synthetic import synthetic_symbols

UNIVERSE = synthetic_symbols(["BTC/USDT", "ETH/USDT", "XRP/USDT"], 1000)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16])
def test_every_symbol_has_exactly_one_owner(count):
    shards = [Shard(i, count) for i in range(count)]
    owners = {s: [sh.index for sh in shards if sh.owns(s)] for s in UNIVERSE}
    assert all(len(o) == 1 for o in owners.values())  # disjoint and covering
    parts = partition(UNIVERSE, count)
    assert sorted(sum(parts, [])) == sorted(UNIVERSE)
    assert [sh.select(UNIVERSE) for sh in shards] == parts


def test_the_split_is_roughly_even_over_1000_symbols():
    for count in (2, 4):
        sizes = [len(p) for p in partition(UNIVERSE, count)]
        assert min(sizes) > 0.8 * len(UNIVERSE) / count, sizes


def test_ownership_is_stable_across_processes_and_forms():
    # CRC-32 of the exchange id: a fixed function, not Python's salted hash (same answer in every process)
    assert shard_of("BTC/USDT", 4) == zlib.crc32(b"BTCUSDT") % 4 == shard_of("BTCUSDT", 4)
    assert [shard_of(s, 2) for s in ("BTC/USDT", "ETH/USDT", "XRP/USDT")] == [
        zlib.crc32(s.encode()) % 2 for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")
    ]
    assert shard_of("btc/usdt", 3) == shard_of("BTC/USDT", 3)
    assert all(shard_of(s, 1) == 0 for s in UNIVERSE[:50])


def test_bad_shards_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="index must be 0..1"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="count must be"):
        Shard(0, 0)
    with pytest.raises(ValidationError, match="index 2 must be below count 2"):
        ShardSettings(index=2, count=2)
    with pytest.raises(ValidationError, match="count"):
        ShardSettings(index=0, count=0)


def test_settings_take_the_shard_from_the_environment(monkeypatch):
    monkeypatch.setenv("BNML_SIGNAL__SHARD__INDEX", "1")
    monkeypatch.setenv("BNML_SIGNAL__SHARD__COUNT", "2")
    monkeypatch.setenv("BNML_MARKET_DATA__SHARD__COUNT", "3")
    s = BotSettings()
    assert s.signal.shard.shard() == Shard(1, 2)
    assert s.market_data.shard.shard() == Shard(0, 3)
    assert BotSettings.model_fields  # defaults: unsharded
    monkeypatch.delenv("BNML_SIGNAL__SHARD__INDEX")
    monkeypatch.delenv("BNML_SIGNAL__SHARD__COUNT")
    monkeypatch.delenv("BNML_MARKET_DATA__SHARD__COUNT")
    assert BotSettings().signal.shard.shard() == Shard(0, 1)


def test_subject_filter_reads_the_symbol_token():
    sh = Shard(shard_of("BTC/USDT", 2), 2)
    accept = SubjectOwnership(sh)
    assert accept("md.tick.BTCUSDT") and accept("md.status.BTCUSDT") and accept("md.candle.BTCUSDT.1m")
    other = next(s for s in UNIVERSE if not sh.owns(s)).replace("/", "")
    assert not accept(f"md.tick.{other}") and not accept(f"md.candle.{other}.1s")
    assert not accept("md.tick")  # no symbol token: not ours
    assert SubjectOwnership(Shard())("md.tick.ANYUSDT")


def _inst(name, index, count, symbols, alive=True, age=0.5):
    return InstanceShard(
        instance=name, index=index, count=count, symbols=tuple(symbols), alive=alive, age_s=age
    )


def test_ownership_flags_a_dead_shards_symbols():
    p0, p1 = partition(UNIVERSE[:40], 2)
    view = ownership([_inst("a", 0, 2, p0), _inst("b", 1, 2, p1, alive=False, age=12.0)])
    assert not view["ok"] and view["missing_shards"] == [1]
    assert view["unowned"] == len(p1) and view["unowned_sample"] == sorted(p1)[:20]
    assert view["contested"] == 0 and view["symbols"] == 40
    assert [i["status"] for i in view["instances"]] == ["ok", "down"]
    # positive control: both alive, nothing flagged
    ok = ownership([_inst("a", 0, 2, p0), _inst("b", 1, 2, p1)])
    assert ok["ok"] and ok["unowned"] == 0 and ok["missing_shards"] == []
    assert ok["instances"][0]["digest"] == digest(p0)


def test_ownership_after_a_restart_forgets_the_old_instance():
    p0, p1 = partition(UNIVERSE[:40], 2)
    view = ownership(
        [_inst("a", 0, 2, p0), _inst("b", 1, 2, p1, alive=False, age=30.0), _inst("c", 1, 2, p1)]
    )
    assert view["ok"] and [i["instance"] for i in view["instances"]] == ["a", "c"]


def test_ownership_flags_two_owners_and_count_disagreement():
    everything = UNIVERSE[:40]
    view = ownership([_inst("a", 0, 2, everything), _inst("b", 1, 2, everything)])
    assert not view["ok"] and view["contested"] == 40
    mixed = ownership(
        [_inst("a", 0, 2, partition(everything, 2)[0]), _inst("b", 0, 3, partition(everything, 3)[0])]
    )
    assert not mixed["ok"] and mixed["counts"] == [2, 3]


def test_status_prints_owners_and_what_has_no_live_owner():
    p0, p1 = partition(UNIVERSE[:40], 2)
    status = {
        "mode": "paper",
        "trading_state": "ACTIVE",
        "kill_switch": {"engaged": False},
        "counts": {"ticks": 1},
        "services": {"signal": {"heartbeat_age_s": 0.2, "status": "ok"}},
        "shards": {
            "signal": ownership([_inst("aaa", 0, 2, p0), _inst("bbb", 1, 2, p1, alive=False, age=9)]),
            "market_data": ownership([_inst("md1", 0, 1, UNIVERSE[:40])]),
        },
        "urls": {},
    }
    out = io.StringIO()
    render_status(status, ui.console(out))
    text = out.getvalue()
    assert "signal shards 2: DEGRADED" in text
    assert any(line.split()[:4] == ["1/2", "bbb", "down", str(len(p1))] for line in text.splitlines())
    assert f"{len(p1)} symbol(s) without a live owner" in text and sorted(p1)[0] in text
    assert "no live instance for shard(s) 1" in text
    assert "market_data shards" not in text  # unsharded, one live instance: nothing to say
