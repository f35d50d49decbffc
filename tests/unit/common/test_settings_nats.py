"""The nats section: one URL or a cluster's list, replicas per stream (R1 by default), the critical streams
never below the rest, and the stream names kept equal to libs/common/subjects.py."""

import pytest

from libs.common import subjects
from libs.common.errors import ConfigurationError
from libs.common.settings import CRITICAL_STREAMS, STREAM_NAMES, load_settings


def _load(tmp_path, text: str, monkeypatch=None):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text(text)
    return load_settings(cfg)


def test_defaults_are_one_server_and_r1_everywhere(tmp_path):
    s = _load(tmp_path, "nats: {url: 'nats://127.0.0.1:4222'}\n")
    assert s.nats.servers() == ["nats://127.0.0.1:4222"]
    assert {name: s.nats.replicas_for(name) for name in STREAM_NAMES} == dict.fromkeys(STREAM_NAMES, 1)


def test_a_cluster_url_list_and_per_stream_replicas(tmp_path, monkeypatch):
    monkeypatch.setenv("NATS_URL", "nats://a:4222, nats://b:4222,nats://c:4222")
    monkeypatch.setenv("BNML_NATS__REPLICAS", "3")
    s = _load(tmp_path, "nats: {stream_replicas: {DLQ: 1, KILL_SWITCH: 5}}\n")
    assert s.nats.servers() == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert s.nats.replicas_for("VERDICTS") == 3
    assert s.nats.replicas_for("DLQ") == 1
    assert s.nats.replicas_for("KILL_SWITCH") == 5


@pytest.mark.parametrize(
    "text,needle",
    [
        ("nats: {stream_replicas: {VERDICT: 3}}\n", "not a stream"),
        ("nats: {replicas: 3, stream_replicas: {FILLS: 1}}\n", "fewer than replicas"),
        ("nats: {stream_replicas: {DLQ: 7}}\n", "1 to 5"),
        ("nats: {replicas: 0}\n", "greater than or equal to 1"),
        ("nats: {url: 'nats://a:4222,localhost:4222'}\n", "not a nats:// URL"),
    ],
)
def test_bad_nats_settings_refuse_to_start_naming_the_section(tmp_path, text, needle):
    with pytest.raises(ConfigurationError) as err:
        _load(tmp_path, text)
    assert err.value.key.startswith("nats"), err.value.key
    assert needle in err.value.problem, err.value.problem


def test_the_settings_know_the_streams_subjects_defines():
    assert set(STREAM_NAMES) == {s.name for s in subjects.STREAMS}
    assert set(CRITICAL_STREAMS) == {s.name for s in subjects.STREAMS if s.critical}
    assert set(CRITICAL_STREAMS) == {"KILL_SWITCH", "VERDICTS", "ORDERS", "FILLS"}
