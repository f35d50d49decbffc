"""The model card: each section present in report.md AND computed (calibration, importance, scores, provenance)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from services.signal import features
from services.signal.model_card import (
    brier,
    class_prior,
    feature_code_sha256,
    git_commit,
    library_versions,
    log_loss,
    permutation_importance_oos,
    reliability_table,
    scores_vs_prior,
    sharpe,
)
from services.signal.training import Dataset, make_labels, walk_forward


def test_reliability_of_a_calibrated_predictor_is_on_the_diagonal():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 200_000)
    outcome = (rng.uniform(0, 1, p.size) < p).astype(float)
    rel = reliability_table(p, outcome, bins=10)
    assert len(rel["rows"]) == 10 and sum(r["n"] for r in rel["rows"]) == p.size
    for r in rel["rows"]:
        assert r["bin"][0] <= r["mean_predicted"] < r["bin"][1]
        assert abs(r["observed"] - r["mean_predicted"]) < 0.01, r
    assert rel["ece"] < 0.01
    # positive control: the same outcomes against an over-confident forecast are off the diagonal
    skewed = reliability_table(np.clip((p - 0.5) * 1.8 + 0.5, 0, 1), outcome, bins=10)
    assert skewed["ece"] > 0.05
    assert skewed["rows"][0]["observed"] > skewed["rows"][0]["mean_predicted"] + 0.05


def test_log_loss_and_brier_match_sklearn_and_the_prior_has_no_skill():
    rng = np.random.default_rng(1)
    y = rng.choice([-1, 0, 1], size=3000, p=[0.3, 0.2, 0.5]).astype(float)
    raw = rng.dirichlet([2, 2, 2], size=y.size)
    assert log_loss(raw, y) == pytest.approx(sk_log_loss(y, raw, labels=[-1, 0, 1]), rel=1e-9)
    # multi-class Brier = sum of the per-class one-vs-rest Brier scores
    per_class = sum(brier_score_loss((y == c).astype(int), raw[:, j]) for j, c in enumerate((-1, 0, 1)))
    assert brier(raw, y) == pytest.approx(per_class, rel=1e-9)
    prior = class_prior(y)
    assert prior == pytest.approx([np.mean(y == -1), np.mean(y == 0), np.mean(y == 1)])
    same = scores_vs_prior(np.tile(prior, (y.size, 1)), y, prior)
    assert same["log_loss_skill"] == pytest.approx(0, abs=1e-9) and same["brier_skill"] == pytest.approx(
        0, abs=1e-9
    )
    onehot = np.stack([(y == c).astype(float) for c in (-1, 0, 1)], axis=1)
    perfect = scores_vs_prior(onehot, y, prior)
    assert perfect["brier"] == 0 and perfect["brier_skill"] == 1 and perfect["log_loss_skill"] > 0.99
    assert (
        scores_vs_prior(raw, y, prior)["log_loss_skill"] < 0
    )  # random probabilities are worse than the prior


def test_sharpe_sign_and_scale():
    up = np.cumprod(np.r_[1.0, 1 + np.tile([0.002, -0.001], 100)])
    assert sharpe(up, 8760) > 0 and sharpe(up[::-1] / up[-1], 8760) < 0
    assert sharpe(up, 4 * 8760) == pytest.approx(sharpe(up, 8760) * 2)
    assert sharpe(np.ones(10), 8760) is None


def _leaky_dataset(n: int = 2400, seed: int = 4) -> Dataset:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    horizon, fee = 5, 0.001
    y = make_labels(close, horizon, fee)
    leak = np.nan_to_num(y) + rng.normal(0, 0.3, n)  # tomorrow's label, barely blurred
    noise = rng.normal(0, 1, n)
    x = np.column_stack([noise, leak, rng.normal(0, 1, n)])
    times = list(
        pl.datetime_range(
            pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1) + pl.duration(hours=n - 1), "1h", eager=True
        )
    )
    fwd = np.full(n, np.nan)
    fwd[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return Dataset(pl.DataFrame({"close": close}), x, y, fwd, close, times)


def test_permutation_importance_ranks_a_leak_first_and_noise_near_zero():
    ds = _leaky_dataset()
    ev = walk_forward(
        ds,
        horizon=5,
        fee_rate=0.001,
        threshold=0.42,
        min_edge_bps=0.0,
        folds=3,
        initial_fraction=0.4,
        kind="logistic",
        c=0.5,
        seed=7,
    )
    sets = []
    for m, te in zip(ev.fold_models, ev.fold_test, strict=True):
        lab = ~np.isnan(ds.y[te])
        sets.append((m, ds.x[te][lab], ds.y[te][lab]))
    imp = permutation_importance_oos(sets, ["noise", "leak", "noise2"], repeats=5, seed=7)
    by = {r["feature"]: r["importance"] for r in imp}
    assert imp[0]["feature"] == "leak" and by["leak"] > 0.3
    assert abs(by["noise"]) < 0.01 and abs(by["noise2"]) < 0.01
    # the walk-forward's own quality figures see the leak too: far better than the prior, and calibrated-ish
    q = ev.report["quality"]
    assert q["log_loss_skill"] > 0.3 and q["rows"] == sum(
        int((~np.isnan(ds.y[te])).sum()) for te in ev.fold_test
    )
    assert sum(r["n"] for r in q["reliability_up"]["rows"]) == q["rows"]
    assert all(f["quality"]["log_loss"] < f["quality"]["log_loss_prior"] for f in ev.report["folds"])


def test_git_commit_outside_a_checkout_is_unknown_and_inside_is_the_head(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "does-not-exist") == "unknown"
    here = git_commit(Path(__file__).resolve().parent)
    assert here == "unknown" or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", here)


def test_feature_code_hash_is_the_sha256_of_the_feature_module():
    assert feature_code_sha256() == hashlib.sha256(Path(features.__file__).read_bytes()).hexdigest()
    libs = library_versions()
    assert set(libs) == {"python", "scikit-learn", "polars", "numpy", "ccxt"}
    assert libs["numpy"] == np.__version__


def test_report_md_carries_every_section_of_the_model_card(trained):
    settings, model = trained
    meta = model.metadata
    report_md = (model.path / "report.md").read_text()
    report = json.loads((model.path / "report.json").read_text())
    for heading in (
        "## Out of sample",
        "### Per fold",
        "## Null distribution",
        "## Probabilistic quality",
        "### Reliability, BUY class",
        "## Permutation feature importance",
        "## Provenance",
    ):
        assert heading in report_md, heading
    assert "gross return %" in report_md and "Sharpe" in report_md and "turnover" in report_md
    for name in meta["features"]["names"]:
        assert f"| {name} |" in report_md
    assert len(report["importance"]) == len(meta["features"]["names"])
    assert sum(r["n"] for r in report["quality"]["reliability_up"]["rows"]) == report["quality"]["rows"]
    assert len(re.findall(r"^\| \d+ \| \d+ \| ", report_md, flags=re.M)) == len(report["folds"])
    prov = meta["provenance"]
    assert prov == report["provenance"]
    assert prov["feature_code_sha256"] == feature_code_sha256() and prov["feature_code_sha256"] in report_md
    assert prov["git_commit"] in report_md
    m = report["model"]
    for k in ("gross_return_pct", "sharpe", "exposure_time_pct", "turnover"):
        assert k in m, k
    # gross is the same decisions without fees: never below net when it traded
    if m["n_trades"]:
        assert m["gross_return_pct"] > m["total_return_pct"]


def test_the_bootstrap_model_skips_importance_and_says_so(tmp_path):
    """ensure_model's bootstrap (the paper demo's first start) must stay quick: no permutation importance."""
    from libs.common.settings import BotSettings
    from services.signal.train import ensure_model
    from tests.kit.signal import make_settings

    small = BotSettings().signal.train.model_copy(update={"synthetic_bars": 2000, "folds": 2})
    path = ensure_model(make_settings(tmp_path, train=small))
    report = json.loads((path / "report.json").read_text())
    assert report["importance"] == [] and "not computed" in report["importance_method"]
    assert "not computed (bootstrap model)" in (path / "report.md").read_text()
