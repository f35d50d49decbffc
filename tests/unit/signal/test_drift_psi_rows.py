"""`psi_rows` (the drift check's PSI of every column at once) is `psi_from_expected` column by column, to the
bit; and a monitor's check scores are the per-column PSI of its window, with columns of different bin counts."""

from __future__ import annotations

import numpy as np
import pytest

from services.signal.drift import (
    DriftMonitor,
    expected_shares,
    psi_from_expected,
    psi_rows,
    reference_bins,
)


@pytest.mark.parametrize("seed", range(5))
def test_psi_rows_is_psi_from_expected_row_by_row(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        m, b = int(rng.integers(1, 12)), int(rng.integers(2, 14))
        expected = np.maximum(rng.dirichlet(np.ones(b), size=m), 1e-4)
        counts = rng.integers(0, rng.choice([2, 50, 5000]), size=(m, b))
        counts[rng.random(m) < 0.1] = 0  # some empty columns: PSI 0
        got = psi_rows(expected, counts)
        want = [psi_from_expected(expected[j], counts[j]) for j in range(m)]
        assert got.tolist() == want


def test_a_monitors_check_scores_every_column_as_psi_from_expected():
    rng = np.random.default_rng(3)
    x_ref = np.column_stack([rng.normal(size=3000), rng.integers(0, 3, 3000), rng.exponential(size=3000)])
    names = ("a", "discrete", "c")
    refs = {n: reference_bins(x_ref[:, j]) for j, n in enumerate(names)}
    assert len({len(r["edges"]) for r in refs.values()}) > 1  # columns with different bin counts
    pred = reference_bins(rng.normal(size=3000))
    mon = DriftMonitor(names, refs, pred)
    x = np.column_stack([rng.normal(0.3, size=400), rng.integers(0, 3, 400), rng.exponential(size=400)])
    s = rng.normal(size=400)
    last = None
    for i in range(400):
        last = mon.observe(x[i : i + 1], s[i : i + 1], i) or last
    assert last is not None
    for j, n in enumerate(names):
        want = psi_from_expected(expected_shares(refs[n]), mon._window_counts[j])
        assert last.scores[n] == round(want, 6)
    assert last.scores["prediction"] == round(
        psi_from_expected(expected_shares(pred), mon._window_counts[-1]), 6
    )
