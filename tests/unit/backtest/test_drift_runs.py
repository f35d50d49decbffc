"""The drift monitor's runs of quiet bars taken without doing the work twice: `plan_quiet` keeps what its dry
checks found and `take_quiet` applies `n` bars of the plan in array operations, running no check. Against a
twin monitor fed the same bars one by one (`observe_binned`), over random references, windows, check
intervals, rows per bar and cuts `n` (0, the plan's whole run, at and around each due check), with drift
coming and going (feature shifts and a failing hit rate): every field, every chunk and the last result
equal; and the windows of a run's due checks, scored at once, scored bit for bit as one check scores its
window."""

from __future__ import annotations

import numpy as np
import pytest

from libs.common.settings.signal import DriftSettings
from services.signal.drift import DriftMonitor, QuietDrift, psi_from_expected, reference_bins
from tests.kit.signal import drift_state


def _monitors(rng: np.random.Generator, detect: float = 0.6) -> tuple[DriftMonitor, DriftMonitor, int]:
    """Two equal monitors over random references (1 to 4 features) and thresholds (mean feature PSI
    `detect` detects drift), and the rows per bar."""
    names = tuple("abcd"[: int(rng.integers(1, 5))])
    refs = {n: reference_bins(rng.normal(size=400), bins=int(rng.integers(3, 11))) for n in names}
    pred = reference_bins(rng.normal(size=400))
    cfg = DriftSettings(
        window=int(rng.integers(20, 45)),
        check_every=int(rng.integers(1, 8)),
        clear_after_checks=int(rng.integers(1, 4)),
        psi_detect=detect,
        psi_clear=detect * 2 / 3,
        prediction_psi_detect=detect,
        prediction_psi_clear=detect / 2,
        hit_rate_window=5,
        hit_rate_min_count=5,
        hit_rate_min=0.25,
    )
    full, fast = (DriftMonitor(names, refs, pred, cfg) for _ in range(2))
    return full, fast, int(rng.integers(1, 4))


def _bars(rng: np.random.Generator, mon: DriftMonitor, m: int, rows: int, shift: list[float]) -> np.ndarray:
    """`m` bars of `rows` rows binned (m, rows, k + 1); `shift[0]`, the distribution's shift, comes and goes."""
    k = len(mon.feature_names)
    bars = []
    for _ in range(m):
        if rng.random() < 0.05:
            shift[0] = float(rng.choice([0.0, 0.0, 2.0, -1.5]))
        x = rng.normal(shift[0], 1, size=(rows, k))
        if rng.random() < 0.1:
            x[0, int(rng.integers(k))] = np.nan  # dropped
        bars.append(mon.bin_index(x, rng.normal(shift[0], 1, size=rows)))
    return np.stack(bars) if bars else np.zeros((0, rows, k + 1), dtype=np.int64)


def _cut(rng: np.random.Generator, plan: QuietDrift) -> int:
    """How many bars of the plan to take: none, all, or at or around one of its due checks, or any."""
    picks = [0, plan.n, int(rng.integers(0, plan.n + 1))]
    for d in plan.due:
        picks += [d, d + 1, d + 2]
    return min(plan.n, int(rng.choice(picks)))


@pytest.mark.parametrize("seed", range(12))
def test_take_quiet_leaves_what_bar_by_bar_leaves(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    full, fast, rows = _monitors(rng)
    key, shift, cuts, changes, checked = 0, [0.0], set(), 0, 0
    for _block in range(40):
        m = int(rng.integers(0, 130))  # empty, short, longer than the window
        idx = _bars(rng, full, m, rows, shift)
        keys: list[object] = list(range(key, key + m))
        before = drift_state(fast)
        plan = fast.plan_quiet(idx)
        assert drift_state(fast) == before  # planning changes nothing
        n = _cut(rng, plan)
        cuts.add("none" if n == 0 else "all" if n == plan.n else "part")
        due = []
        for j in range(n):
            res = full.observe_binned(idx[j], keys[j])
            if res is not None:
                assert not res.changed
                due.append(j)
        assert tuple(d for d in plan.due if d < n) == tuple(due)  # the same checks fall due
        checked += len(due)
        with monkeypatch.context() as mp:  # no check runs while taking
            mp.setattr(fast, "check", lambda: pytest.fail("take_quiet ran a check"))
            fast.take_quiet(plan, n, keys[:n])
        assert drift_state(fast) == drift_state(full)
        # the rest one by one on both (the bar the plan stopped before: the first whose check changes), now
        # and then a bar joining the last one (same key), outcomes
        for j in range(n, m):
            if j == plan.n:
                res = full.observe_binned(idx[j], keys[j])
                assert res is not None and res.changed
                changes += 1
                assert fast.observe_binned(idx[j], keys[j]) == res
                continue
            assert full.observe_binned(idx[j], keys[j]) == fast.observe_binned(idx[j], keys[j])
        if m and rng.random() < 0.3:
            extra = _bars(rng, full, 1, rows, shift)[0]
            assert full.observe_binned(extra, keys[-1]) == fast.observe_binned(extra, keys[-1])
        if rng.random() < 0.3:
            for _ in range(int(rng.integers(1, 6))):
                hit = bool(rng.random() < (0.1 if shift[0] else 0.8))
                full.record_outcome(hit)
                fast.record_outcome(hit)
        assert drift_state(fast) == drift_state(full)
        key += m
    assert changes > 0 and checked > 0 and cuts == {"none", "all", "part"}


@pytest.mark.parametrize("seed", range(6))
def test_a_run_longer_than_the_window_cut_at_every_bar(seed):
    rng = np.random.default_rng(seed)
    full0, _, rows = _monitors(rng, detect=50.0)  # nothing detects: the whole run is quiet
    window = full0.thresholds.window
    # first the window partly filled (or not at all, or full), a check some bars ago
    warm = _bars(rng, full0, int(rng.integers(0, window + 8)), rows, [0.0])
    idx = _bars(rng, full0, 3 * window + 7, rows, [0.0])
    keys: list[object] = list(range(idx.shape[0]))
    for n in range(idx.shape[0] + 1):
        full, fast = (
            DriftMonitor(
                full0.feature_names, full0.feature_reference, full0.prediction_reference, full0.thresholds
            )
            for _ in range(2)
        )
        for j, bar in enumerate(warm):
            full.observe_binned(bar, j - len(warm))
            fast.observe_binned(bar, j - len(warm))
        plan = fast.plan_quiet(idx)
        assert plan.n == idx.shape[0] and len(plan.due) > 2
        for j in range(n):
            full.observe_binned(idx[j], keys[j])
        fast.take_quiet(plan, n, keys[:n])
        assert drift_state(fast) == drift_state(full)


def test_a_plan_is_taken_only_as_planned():
    rng = np.random.default_rng(5)
    _, mon, rows = _monitors(rng)
    idx = _bars(rng, mon, 60, rows, [0.0])
    keys: list[object] = list(range(60))
    plan = mon.plan_quiet(idx)
    with pytest.raises(ValueError):
        mon.take_quiet(plan, plan.n + 1, list(range(plan.n + 1)))
    with pytest.raises(ValueError):  # one key per bar
        mon.take_quiet(plan, 3, keys[:2])
    with pytest.raises(ValueError):  # a bar with the key of the one before would join it
        mon.take_quiet(plan, 3, [0, 1, 1])
    mon.observe_binned(idx[0], -1)
    with pytest.raises(RuntimeError):  # the monitor moved on: the plan's window is not its window
        mon.take_quiet(plan, 3, keys[:3])
    plan = mon.plan_quiet(idx)
    with pytest.raises(ValueError):  # the first bar with the last bar's key
        mon.take_quiet(plan, 2, [-1, 0])
    mon.record_outcome(True)
    with pytest.raises(RuntimeError):  # an outcome moves the hit rate the checks read
        mon.take_quiet(plan, 2, keys[:2])
    mon.take_quiet(mon.plan_quiet(idx), 0, [])  # none: nothing to do, nothing checked


@pytest.mark.parametrize("seed", range(8))
def test_the_windows_of_a_run_scored_at_once_are_scored_as_one_check_scores_its_window(seed):
    """`_psis` of many windows (a run's dry checks) is, bit for bit, `psi_from_expected` of each column of
    each window alone (what a check of that window would score), and `_levels` takes their feature means
    as of each alone (up to 12 features: past 8 a sum adds pairwise)."""
    rng = np.random.default_rng(seed)
    names = tuple("abcdefghijkl"[: int(rng.integers(1, 13))])
    refs = {n: reference_bins(rng.normal(size=400), bins=int(rng.integers(3, 11))) for n in names}
    mon = DriftMonitor(names, refs, reference_bins(rng.normal(size=400)))
    windows = rng.integers(0, int(rng.integers(2, 60)), size=(int(rng.integers(1, 400)), mon._nbins))
    windows[0] = 0  # an empty window scores 0
    got = mon._psis(windows)
    mean, _, _ = mon._levels(got, None)
    for r, flat in enumerate(windows):
        want = [psi_from_expected(e, c) for e, c in zip(mon._expected, mon._columns(flat), strict=True)]
        assert got[r].tolist() == want
        assert mon._psis(windows[r : r + 1])[0].tobytes() == got[r].tobytes()
        # the feature mean as a check of that window alone takes it (of its features' floats)
        assert float(mean[r]) == float(np.mean(want[:-1])) == float(mon._levels(got[r : r + 1], None)[0][0])


@pytest.mark.parametrize("seed", range(4))
def test_a_failing_hit_rate_alone_ends_a_run_where_bar_by_bar_detects_and_clears(seed):
    rng = np.random.default_rng(seed)
    full, fast, rows = _monitors(rng, detect=50.0)  # the features and the prediction never alarm
    window, every = full.thresholds.window, full.thresholds.check_every
    key = 0
    for outcome, detected in ((False, True), (True, False)):  # misses detect, hits clear
        for _ in range(5):
            full.record_outcome(outcome)
            fast.record_outcome(outcome)
        idx = _bars(rng, full, window + 8 * every + 8, rows, [0.0])
        keys: list[object] = list(range(key, key + idx.shape[0]))
        plan = fast.plan_quiet(idx)
        assert plan.n < idx.shape[0]
        for j in range(plan.n):
            res = full.observe_binned(idx[j], keys[j])
            assert res is None or not res.changed
        fast.take_quiet(plan, plan.n, keys[: plan.n])
        assert drift_state(fast) == drift_state(full)
        res = full.observe_binned(idx[plan.n], keys[plan.n])
        assert res is not None and res.changed and res.detected is detected
        assert fast.observe_binned(idx[plan.n], keys[plan.n]) == res
        key += idx.shape[0]
