"""The registry: verified before unpickling, refused loudly otherwise; ensure_model bootstraps a model."""

from __future__ import annotations

import json
import time

import pytest

from services.signal.registry import (
    ModelRefused,
    load_current,
    load_model,
    read_current,
    save_model,
    set_current,
)
from services.signal.train import ensure_model
from tests.kit.signal import make_settings


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


def test_bnml_train_on_synthetic_data_writes_the_artefact_but_refuses_to_promote_it(tmp_path, capsys):
    from bnml.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--folds", "2", "--models-dir", str(tmp_path), "--horizon", "5"]
    )
    assert args.func(args) == 3  # written, not promoted: the gate failed
    out, err = capsys.readouterr()
    assert "fold 1/2" in err and "fold 2/2" in err and "buy&hold" in err
    assert "NOT promoted" in err and "synthetic data" in err
    assert read_current(tmp_path) is None
    version = out.strip().rsplit("/", 1)[-1]
    meta = json.loads((tmp_path / version / "metadata.json").read_text())
    assert meta["gate"]["passed"] is False and "promotion" not in meta
    assert load_model(tmp_path, version).horizon == 5


def test_force_promote_is_recorded_in_the_metadata_and_audited(tmp_path, capsys):
    from bnml.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--folds", "2", "--models-dir", str(tmp_path), "--force-promote"]
    )
    assert args.func(args) == 0
    version = read_current(tmp_path)
    meta = json.loads((tmp_path / version / "metadata.json").read_text())
    assert meta["gate"]["passed"] is False
    assert meta["promotion"]["forced"] is True and meta["promotion"]["kind"] == "force_promote"
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["action"], e["version"], e["gate_passed"]) for e in entries] == [
        ("force_promote", version, False)
    ]
    assert "WARNING: promoted without passing the gate" in capsys.readouterr().err


def test_force_promote_is_refused_in_live_mode(tmp_path, monkeypatch, capsys):
    from bnml.cli import build_parser

    cfg = tmp_path / "live.yaml"
    cfg.write_text("mode: live\nlive:\n  confirm: true\n")
    monkeypatch.setenv("BNML_LIVE__API_KEY", "k")
    monkeypatch.setenv("BNML_LIVE__API_SECRET", "s")
    args = build_parser().parse_args(
        ["--config", str(cfg), "train", "--models-dir", str(tmp_path / "m"), "--force-promote"]
    )
    assert args.func(args) == 4
    assert "refused in mode: live" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing trained, nothing written


def test_ensure_model_never_bootstraps_in_live_mode(tmp_path):
    settings = make_settings(tmp_path).model_copy(update={"mode": "live"})
    assert ensure_model(settings) is None
    assert read_current(tmp_path) is None and not any(tmp_path.iterdir())


def test_train_command_reports_a_missing_file_cleanly(tmp_path, capsys):
    from services.signal.train import main

    assert main(["--data", str(tmp_path / "nope.csv"), "--models-dir", str(tmp_path)]) == 1
    assert "train:" in capsys.readouterr().err
    assert read_current(tmp_path) is None


def test_the_registry_imports_nothing_that_trains():
    """registry <- train, never registry -> train (issue 21: the two imported each other)."""
    import ast
    from pathlib import Path

    import services.signal.registry as registry

    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "services.signal.train" not in imported and not hasattr(registry, "ensure_model")
