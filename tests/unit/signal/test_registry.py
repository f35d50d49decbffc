"""The registry: verified before unpickling, refused loudly otherwise; ensure_model bootstraps a model."""

from __future__ import annotations

import json
import time

import pytest

from services.signal.registry import (
    ModelRefused,
    ensure_model,
    load_current,
    load_model,
    read_current,
    save_model,
    set_current,
)
from tests.unit.signal.conftest import make_settings


def _copy_model(trained, root, version="v-test"):
    _, model = trained
    meta = {k: v for k, v in model.metadata.items() if k not in ("version", "sha256")}
    return save_model(root, version, model.pipeline, meta)


def test_saved_model_loads_back_with_its_metadata(trained, tmp_path):
    path = _copy_model(trained, tmp_path)
    m = load_current(tmp_path)
    assert m.version == "v-test" and m.path == path
    assert m.spec == trained[1].spec and m.horizon == trained[1].horizon


def test_tampered_artefact_is_refused_before_unpickling(trained, tmp_path):
    path = _copy_model(trained, tmp_path)
    blob = (path / "model.pkl").read_bytes()
    (path / "model.pkl").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ModelRefused, match="sha256 mismatch"):
        load_current(tmp_path)


def test_metadata_without_hash_is_refused(trained, tmp_path):
    path = _copy_model(trained, tmp_path)
    meta = json.loads((path / "metadata.json").read_text())
    del meta["sha256"]
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelRefused):
        load_model(tmp_path, "v-test")


def test_current_naming_garbage_is_refused(tmp_path):
    (tmp_path / "current").write_text("../../etc/passwd")
    with pytest.raises(ModelRefused):
        read_current(tmp_path)


def test_promoting_a_missing_version_is_refused(tmp_path):
    with pytest.raises(ModelRefused):
        set_current(tmp_path, "nope")


def test_ensure_model_trains_a_small_model_quickly_when_none_exists(tmp_path):
    settings = make_settings(tmp_path)
    t0 = time.monotonic()
    path = ensure_model(settings)
    assert time.monotonic() - t0 < 30
    assert read_current(tmp_path) == path.name
    assert load_current(tmp_path).timeframe == "1s"
    assert ensure_model(settings) == path  # idempotent: no retraining


def test_ensure_model_never_trains_over_a_tampered_model(trained, tmp_path):
    path = _copy_model(trained, tmp_path)
    (path / "model.pkl").write_bytes(b"not the model")
    with pytest.raises(ModelRefused):
        ensure_model(make_settings(tmp_path))
    assert read_current(tmp_path) == "v-test"


def test_bnml_train_command_trains_promotes_and_reports_progress(tmp_path, capsys):
    from bnml.cli import build_parser

    args = build_parser().parse_args(["train", "--folds", "2", "--models-dir", str(tmp_path), "--horizon", "5"])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    version = read_current(tmp_path)
    assert version and out.strip().endswith(version)
    assert "fold 1/2" in err and "fold 2/2" in err and "buy&hold" in err
    assert load_current(tmp_path).horizon == 5


def test_train_command_reports_a_missing_file_cleanly(tmp_path, capsys):
    from services.signal.train import main

    assert main(["--data", str(tmp_path / "nope.csv"), "--models-dir", str(tmp_path)]) == 1
    assert "train:" in capsys.readouterr().err
    assert read_current(tmp_path) is None
