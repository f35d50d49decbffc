"""The drift monitor's one-pass binning (a speed-up the backtest needed) counts exactly what `bin_counts`
counts per column, non-finite values dropped, values on an edge in the upper bin."""

from __future__ import annotations

import numpy as np

from libs.common.settings.signal import DriftSettings
from services.signal.drift import DriftMonitor, bin_counts, reference_bins


def test_window_counts_equal_bin_counts_per_column():
    rng = np.random.default_rng(3)
    names = ("a", "b", "c")
    ref_x = rng.normal(size=(500, 3))
    refs = {n: reference_bins(ref_x[:, j]) for j, n in enumerate(names)}
    pred = reference_bins(rng.normal(size=500))
    mon = DriftMonitor(names, refs, pred, DriftSettings(window=1000, check_every=1000))
    xs, ss = [], []
    for k in range(60):
        x = rng.normal(size=(2, 3))
        x[0, k % 3] = [np.nan, np.inf, refs[names[k % 3]]["edges"][2]][k % 3]  # NaN, inf, exactly an edge
        s = rng.normal(size=2)
        mon.observe(x, s, key=k // 2)  # two calls per bar time: the second joins the first's chunk
        xs.append(x)
        ss.append(s)
    x, s = np.vstack(xs), np.concatenate(ss)
    for j, n in enumerate(names):
        assert (mon._window_counts[j] == bin_counts(refs[n], x[:, j])).all()
    assert (mon._window_counts[-1] == bin_counts(pred, s)).all()
    assert len(mon._chunks) == 30 and mon.rows_in_window == 120
