"""The model card's figures (pure cores, arrays in, tables out) and its provenance (the thin shell part).

What `report.md` explains beyond returns: probabilistic quality of the out-of-sample predictions against
the prior (log-loss, Brier), a reliability table, permutation feature importance on the out-of-sample folds,
Sharpe of the out-of-sample equity; and where the model came from: library versions, the git commit, the
sha256 of the feature code. `services/signal/train.py` calls these and renders them.
"""

from __future__ import annotations

import hashlib
import math
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.signal.decision import CLASSES

if TYPE_CHECKING:  # training imports this module: the type only
    from services.signal.training import Classifier

EPS = 1e-15
LIBRARIES = ("scikit-learn", "polars", "numpy", "ccxt")


# -- probabilistic quality -----------------------------------------------------------------------
def one_hot(y: np.ndarray) -> np.ndarray:
    """(n, 3) indicator of the classes down, flat, up."""
    y = np.asarray(y).astype(np.int64)
    return np.stack([(y == c).astype(np.float64) for c in CLASSES], axis=1)


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log), probabilities clipped at 1e-15."""
    p = np.clip(np.sum(np.asarray(proba, dtype=np.float64) * one_hot(y), axis=1), EPS, 1.0)
    return float(-np.mean(np.log(p)))


def brier(proba: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot truth (0 = perfect, 2 = worst)."""
    return float(np.mean(np.sum((np.asarray(proba, dtype=np.float64) - one_hot(y)) ** 2, axis=1)))


def class_prior(y: np.ndarray) -> np.ndarray:
    """Class frequencies (down, flat, up) of `y`: the no-skill forecast a model must beat."""
    oh = one_hot(y)
    return oh.mean(axis=0) if oh.shape[0] else np.full(3, 1 / 3)


def scores_vs_prior(proba: np.ndarray, y: np.ndarray, prior: np.ndarray) -> dict[str, Any]:
    """Log-loss and Brier of the model and of the constant `prior` on the same rows; skill > 0 = better."""
    return quality_vs_prior(proba, np.tile(np.asarray(prior, dtype=np.float64), (len(y), 1)), y)


def quality_vs_prior(proba: np.ndarray, prior_rows: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """As `scores_vs_prior`, with the prior given row by row (it differs by walk-forward fold)."""
    n = len(y)
    if n == 0:
        return {"rows": 0}
    pp = prior_rows
    m_ll, p_ll, m_b, p_b = log_loss(proba, y), log_loss(pp, y), brier(proba, y), brier(pp, y)
    return {
        "rows": int(n),
        "log_loss": round(m_ll, 6),
        "log_loss_prior": round(p_ll, 6),
        "brier": round(m_b, 6),
        "brier_prior": round(p_b, 6),
        "log_loss_skill": round(1 - m_ll / p_ll, 6) if p_ll > 0 else None,
        "brier_skill": round(1 - m_b / p_b, 6) if p_b > 0 else None,
    }


def reliability_table(p: np.ndarray, outcome: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Binned predicted probability vs observed frequency (equal-width bins on [0, 1]; empty bins left out),
    and the expected calibration error (row-weighted mean |observed - predicted|)."""
    p = np.asarray(p, dtype=np.float64)
    o = np.asarray(outcome, dtype=np.float64)
    idx = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        if not n:
            continue
        mp, of = float(p[sel].mean()), float(o[sel].mean())
        ece += n * abs(of - mp)
        rows.append(
            {
                "bin": [round(b / bins, 4), round((b + 1) / bins, 4)],
                "n": n,
                "mean_predicted": round(mp, 6),
                "observed": round(of, 6),
            }
        )
    return {"rows": rows, "ece": round(ece / p.size, 6) if p.size else None, "n": int(p.size)}


def sharpe(equity: np.ndarray, bars_per_year: float) -> float | None:
    """Annualised Sharpe of per-bar simple returns (risk-free 0); None when undefined."""
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size < 3:
        return None
    r = np.diff(eq) / eq[:-1]
    sd = float(r.std(ddof=1))
    return round(float(r.mean()) / sd * math.sqrt(bars_per_year), 4) if sd > 0 else None


# -- permutation importance ----------------------------------------------------------------------
def _neg_log_loss(model: Classifier, x: np.ndarray, y: np.ndarray) -> float:
    from services.signal.training import predict_proba

    return -log_loss(predict_proba(model, x), y)


def permutation_importance_oos(
    folds: Sequence[tuple[Classifier, np.ndarray, np.ndarray]],
    names: Sequence[str],
    *,
    repeats: int = 5,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """Permutation importance on the out-of-sample folds: for each fold (its model, its labelled test rows x, y),
    `sklearn.inspection.permutation_importance` with the out-of-sample log-loss as the score (the rise in
    log-loss when a feature's column is shuffled), then the row-weighted mean over folds. Sorted, largest first.
    A feature the model does not use scores ~0; one it relies on scores high."""
    from sklearn.inspection import permutation_importance

    total = np.zeros(len(names))
    sq = np.zeros(len(names))
    rows = 0
    for model, x, y in folds:
        if len(y) < 2:
            continue
        res = permutation_importance(
            model, x, y.astype(np.int64), scoring=_neg_log_loss, n_repeats=repeats, random_state=seed
        )
        total += res.importances_mean * len(y)
        sq += res.importances_std * len(y)
        rows += len(y)
    if rows == 0:
        return []
    out = [
        {"feature": n, "importance": round(float(total[j] / rows), 6), "std": round(float(sq[j] / rows), 6)}
        for j, n in enumerate(names)
    ]
    return sorted(out, key=lambda r: -r["importance"])


# -- provenance (reads the environment; never fails) ---------------------------------------------
def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def git_commit(where: Path) -> str:
    """`git rev-parse HEAD` in `where` (with `-dirty` when the tree has changes), else "unknown": outside a git
    checkout, without git, or on any error."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        commit = head.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown"


def feature_code_sha256() -> str:
    """sha256 of the feature module's source (`services/signal/features.py`): what computes the inputs."""
    from services.signal import features

    return hashlib.sha256(Path(features.__file__).read_bytes()).hexdigest()


def provenance(repo_root: Path) -> dict[str, Any]:
    return {
        "git_commit": git_commit(repo_root),
        "feature_code_sha256": feature_code_sha256(),
        "feature_code": "services/signal/features.py",
        "libraries": library_versions(),
    }
