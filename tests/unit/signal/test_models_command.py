"""`bnml models list|show|promote|retire`: the registry visible and operable, every change audited."""

from __future__ import annotations

import json

from bnml.cli import build_parser
from services.signal.registry import read_audit, read_current, read_metadata, save_model, set_current


def _store(trained, root, version: str, *, passed: bool) -> None:
    _, model = trained
    meta = {k: v for k, v in model.metadata.items() if k not in ("version", "sha256", "promotion")}
    meta["gate"] = {
        "passed": passed,
        "reasons": [] if passed else ["null p-value 0.460 is not below 0.05"],
        "net_return": 4.0 if passed else -78.0,
        "no_trade_return": 0.0,
        "p_value": 0.01 if passed else 0.46,
        "n_trades": 40,
    }
    meta["data"] = {"kind": "file", "path": "x.csv", "sha256": "-"}
    save_model(root, version, model.pipeline, meta, promote=False)


def _run(tmp_path, *argv, config=None) -> int:
    pre = ["--config", str(config)] if config else []
    args = build_parser().parse_args([*pre, "models", *argv])
    return args.func(args)


def _cfg(tmp_path, mode="paper"):
    cfg = tmp_path / f"{mode}.yaml"
    extra = "live:\n  confirm: true\n" if mode == "live" else ""
    cfg.write_text(f"mode: {mode}\n{extra}signal:\n  models_dir: {tmp_path / 'models'}\n")
    return cfg


def test_promote_runs_the_gate_refuses_a_failing_model_and_audits(trained, tmp_path, capsys):
    root, cfg = tmp_path / "models", _cfg(tmp_path)
    _store(trained, root, "bad", passed=False)
    _store(trained, root, "good", passed=True)
    assert _run(tmp_path, "promote", "bad", config=cfg) == 3
    assert read_current(root) is None and "NOT promoted" in capsys.readouterr().err
    assert _run(tmp_path, "promote", "good", config=cfg) == 0
    assert read_current(root) == "good"
    assert read_metadata(root, "good")["promotion"]["forced"] is False
    assert [(e["action"], e["version"]) for e in read_audit(root)] == [
        ("promote_refused", "bad"),
        ("promote", "good"),
    ]
    capsys.readouterr()

    assert _run(tmp_path, "list", "--json", config=cfg) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["current"] == "good"
    assert {m["version"]: (m["gate_passed"], m["current"]) for m in listed["models"]} == {
        "bad": (False, False),
        "good": (True, True),
    }
    assert _run(tmp_path, "show", config=cfg) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (
        shown["version"] == "good"
        and shown["serving"]["live"]["allowed"] is True
        and "reference" not in shown
    )


def test_force_promote_works_in_paper_is_recorded_and_is_refused_in_live(
    trained, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "models"
    _store(trained, root, "bad", passed=False)
    monkeypatch.setenv("BNML_LIVE__API_KEY", "k")
    monkeypatch.setenv("BNML_LIVE__API_SECRET", "s")
    assert _run(tmp_path, "promote", "bad", "--force", config=_cfg(tmp_path, "live")) == 4
    assert read_current(root) is None
    assert _run(tmp_path, "promote", "bad", "--force", "--reason", "demo", config=_cfg(tmp_path)) == 0
    assert read_current(root) == "bad"
    meta = read_metadata(root, "bad")
    assert meta["promotion"]["forced"] is True and meta["promotion"]["reason"] == "demo"
    assert read_audit(root)[-1]["action"] == "force_promote" and read_audit(root)[-1]["gate_passed"] is False
    assert "WITHOUT passing the gate" in capsys.readouterr().out


def test_retiring_the_current_model_clears_current_and_says_so(trained, tmp_path, capsys):
    root, cfg = tmp_path / "models", _cfg(tmp_path)
    _store(trained, root, "good", passed=True)
    set_current(root, "good")
    assert _run(tmp_path, "retire", "good", "--reason", "superseded", config=cfg) == 0
    assert read_current(root) is None
    assert "names no model" in capsys.readouterr().err
    assert read_metadata(root, "good")["retired"]["reason"] == "superseded"
    assert _run(tmp_path, "promote", "good", config=cfg) == 1  # retired: never promoted again


def test_retire_with_a_replacement_that_fails_the_gate_changes_nothing(trained, tmp_path, capsys):
    root, cfg = tmp_path / "models", _cfg(tmp_path)
    _store(trained, root, "good", passed=True)
    _store(trained, root, "bad", passed=False)
    _store(trained, root, "good2", passed=True)
    set_current(root, "good")
    assert _run(tmp_path, "retire", "good", "--replace-with", "bad", config=cfg) == 3
    assert read_current(root) == "good" and "retired" not in read_metadata(root, "good")
    assert _run(tmp_path, "retire", "good", "--replace-with", "good2", config=cfg) == 0
    assert read_current(root) == "good2" and read_metadata(root, "good")["retired"]


def test_status_model_part_names_the_current_model_and_warns_when_it_is_ungated(trained, tmp_path):
    from bnml.commands.suite import model_status

    root, cfg = tmp_path / "models", _cfg(tmp_path)
    assert model_status(str(cfg), "paper") == {
        "version": None,
        "gate_passed": False,
        "warning": "no current model: the signal service holds (every decision HOLD)",
    }
    _store(trained, root, "bad", passed=False)
    _store(trained, root, "good", passed=True)
    set_current(root, "bad")
    paper = model_status(str(cfg), "paper")
    assert paper["version"] == "bad" and paper["gate_passed"] is False
    assert "has not passed the promotion gate" in paper["warning"]
    assert "live mode refuses it" in model_status(str(cfg), "live")["warning"]
    set_current(root, "good")
    assert model_status(str(cfg), "paper") == {"version": "good", "gate_passed": True, "warning": ""}
