"""Drift of live inputs and outputs against the training reference (pure core).

- Population stability index (PSI) per feature over a rolling live window (the last `window` bar times,
  every symbol's rows pooled) against reference bins (training deciles), judged on their mean, and the
  same for the prediction score (p_up - p_down). The window is counted in bars, not rows, so its time
  span does not shrink as the universe grows.
- The live hit rate of past BUY/SELL signals once their horizon has passed (net of fees).
- Hysteresis: detected when a score passes its detect threshold; cleared only after `clear_after_checks`
  consecutive checks where every score is back below the clear threshold.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from libs.common.settings.signal import DriftSettings

EPS = 1e-4

# A monitor's stamps, unique across monitors: a plan of quiet bars (`QuietDrift`) is taken only by the
# monitor, in the state, it was made from.
_STAMPS = itertools.count()


def reference_bins(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Interior decile edges of `values` and the share of values in each bin (exact, ties included)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to build a reference from")
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
    return {"edges": edges.tolist(), "proportions": (counts / counts.sum()).tolist()}


def bin_counts(reference: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """How many finite `values` fall in each reference bin."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    edges = np.asarray(reference["edges"], dtype=np.float64)
    return np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)


def psi_from_counts(reference: dict[str, Any], counts: np.ndarray) -> float:
    return psi_from_expected(expected_shares(reference), counts)


def expected_shares(reference: dict[str, Any]) -> np.ndarray:
    """The reference's bin shares as PSI reads them (floored at EPS)."""
    return np.maximum(np.asarray(reference["proportions"], dtype=np.float64), EPS)


def psi_from_expected(expected: np.ndarray, counts: np.ndarray) -> float:
    """PSI of bin `counts` against `expected_shares` (computed once per reference by a monitor)."""
    total = counts.sum()
    if total == 0:
        return 0.0
    actual = np.maximum(counts / total, EPS)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_rows(expected: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`psi_from_expected` of each row of `counts` (m, b) against the same row of `expected` (m, b), in one
    pass: the same operations element by element, and each row summed as `np.sum` sums a 1-D array (the
    tests hold it bit-equal)."""
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        actual = np.maximum(counts / total[:, None], EPS)
        out = np.sum((actual - expected) * np.log(actual / expected), axis=1)
    return np.where(total == 0, 0.0, out)


def psi(reference: dict[str, Any], values: np.ndarray) -> float:
    """PSI of `values` against a reference from `reference_bins` (0 = same distribution; > 0.25 = shifted)."""
    return psi_from_counts(reference, bin_counts(reference, values))


@dataclass(frozen=True)
class DriftResult:
    """One check: the standing state, whether it just changed, the scores and why."""

    detected: bool
    changed: bool
    scores: dict[str, float]
    reason: str


class CheckState(NamedTuple):
    """The hysteresis a check leaves on its monitor (`detected`, `_calm`)."""

    detected: bool
    calm: int


@dataclass(frozen=True)
class QuietDrift:
    """A run of bars `DriftMonitor.plan_quiet` found quiet, with what its dry checks found, so that taking
    them (`DriftMonitor.take_quiet`) runs no check again.

    `n`: how many of the bars `observe_binned` takes before one whose due check changes the drift state;
    `flats`: each bar's bin counts (bars, bins); `rows`: the rows of each bar; `due`: the bars (all < `n`,
    ascending) whose check is due, `after`: the hysteresis after each of them and `psis`: the column PSIs
    each scored (len(due), columns; its `last` is said from them when taken); `stamp`: the monitor's stamp
    when planned (a plan is taken only from that state)."""

    n: int
    flats: np.ndarray
    rows: int
    due: tuple[int, ...]
    after: tuple[CheckState, ...]
    psis: np.ndarray
    stamp: int


@dataclass
class DriftMonitor:
    feature_names: tuple[str, ...]
    feature_reference: dict[str, dict[str, Any]]
    prediction_reference: dict[str, Any]
    thresholds: DriftSettings = field(default_factory=DriftSettings)

    def __post_init__(self) -> None:
        t = self.thresholds
        self._refs = [self.feature_reference[n] for n in self.feature_names] + [self.prediction_reference]
        self._expected = [expected_shares(r) for r in self._refs]
        # Every column's bins side by side in one flat array (column j at offsets[j]), so a bar is binned in
        # a few array operations whatever the number of features: bin_counts' rule (searchsorted, side
        # "right" = how many edges are <= the value; non-finite values dropped), on edges padded with +inf.
        edges = [np.asarray(r["edges"], dtype=np.float64) for r in self._refs]
        sizes = [e.size + 1 for e in edges]
        self._offsets = np.cumsum([0, *sizes[:-1]])
        self._splits = np.cumsum(sizes)[:-1]
        self._nbins = int(sum(sizes))
        self._pad = np.full((len(edges), max(1, max(e.size for e in edges))), np.inf)
        for j, e in enumerate(edges):
            self._pad[j, : e.size] = e
        # Bin counts per bar time, and their running sum over the window: a check costs O(features x bins)
        # whatever the number of symbols, and each bar only bins its own rows.
        self._chunks: deque[list[Any]] = deque()  # [key, rows, flat counts of every column's bins]
        self._window_flat = np.zeros(self._nbins, dtype=np.int64)
        self._bounds = list(
            zip([0, *self._splits.tolist()], [*self._splits.tolist(), self._nbins], strict=True)
        )
        self._window_counts = self._columns(self._window_flat)  # views: per column
        # the check scores the columns with the same number of bins together (`psi_rows`): per group, the
        # columns, the flat positions of their counts (g, bins) and their expected shares (g, bins)
        by_size: dict[int, list[int]] = {}
        for j, size in enumerate(sizes):
            by_size.setdefault(size, []).append(j)
        self._groups = [
            (
                np.asarray(cols),
                self._offsets[cols][:, None] + np.arange(size),
                np.stack([self._expected[j] for j in cols]),
            )
            for size, cols in by_size.items()
        ]
        self._since_check = 0
        self.rows_seen = 0
        self.rows_in_window = 0
        self._outcomes: deque[bool] = deque(maxlen=t.hit_rate_window)
        self.detected = False
        self._calm = 0
        self.last: DriftResult | None = None
        # renewed by every change of state (a bar, an outcome, a check): what a `QuietDrift` is keyed to
        self._stamp = next(_STAMPS)

    def bin_index(self, x: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The flat bin of every value of the feature rows (n, k) and prediction scores (n,): (n, k + 1), -1
        where the value is not finite (dropped). Pure, row by row: the backtest bins a whole history at once."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        scores = np.atleast_1d(np.asarray(scores, dtype=np.float64))
        vals = np.column_stack([x, scores])
        with np.errstate(invalid="ignore"):
            idx = (vals[:, :, None] >= self._pad[None, :, :]).sum(axis=2) + self._offsets
        return np.where(np.isfinite(vals), idx, -1)

    def observe(self, x: np.ndarray, scores: np.ndarray, key: object = None) -> DriftResult | None:
        """Add the feature rows (n, k) and prediction scores (n,) of one bar time (`key`, e.g. the candle's
        open time; rows with the key of the previous call join that bar; None = a new bar). A check result
        when one is due: at most one per call, every `check_every` bars once `window` bars are held."""
        return self.observe_binned(self.bin_index(x, scores), key)

    def observe_binned(self, idx: np.ndarray, key: object = None) -> DriftResult | None:
        """`observe` of rows already binned by `bin_index` (n, k + 1)."""
        return self._push(np.bincount(idx[idx >= 0], minlength=self._nbins), idx.shape[0], key)

    def _push(self, flat: np.ndarray, rows: int, key: object) -> DriftResult | None:
        """`observe_binned` of `rows` rows whose bin counts are `flat`."""
        self._stamp = next(_STAMPS)
        self.rows_seen += rows
        self.rows_in_window += rows
        self._window_flat += flat
        if key is not None and self._chunks and self._chunks[-1][0] == key:
            self._chunks[-1][2] += flat
            self._chunks[-1][1] += rows
            return None
        self._chunks.append([key, rows, flat])
        while len(self._chunks) > self.thresholds.window:
            _, n, old = self._chunks.popleft()
            self._window_flat -= old
            self.rows_in_window -= n
        self._since_check += 1
        if self._due(len(self._chunks), self._since_check):
            self._since_check = 0
            return self.check()
        return None

    def _due(self, held: int, since: int) -> bool:
        """A check is due with `held` bars in the window, `since` bars after the last check."""
        return held >= self.thresholds.window and since >= self.thresholds.check_every

    def plan_quiet(self, idx: np.ndarray) -> QuietDrift:
        """How many of these bars (`idx` (bars, rows, k + 1): each bar's rows binned by `bin_index`, each bar a new
        bar time) `observe_binned` takes in turn before one whose due check changes the state (drift detected or
        cleared), keeping what its dry checks found for `take_quiet`: the window as it would be after each
        due bar (integer sums), every one scored at once (`_psis`), then the hysteresis chained over them in
        turn as bar by bar would (`_hysteresis`); the first check that changes the state ends the run.
        Changes nothing."""
        m = int(idx.shape[0])
        rows = int(idx.shape[1]) if idx.ndim > 1 else 0
        flats = self._flats(idx) if m else np.zeros((0, self._nbins), dtype=np.int64)
        due = self._due_bars(len(self._chunks), m)
        if not due:
            return QuietDrift(m, flats, rows, (), (), np.zeros((0, len(self._refs))), self._stamp)
        # the window after bar j holds the last `window` of the old chunks then the new bars: its counts are
        # the window now, plus the new bars up to j, minus the chunks pushed out (the old ones first)
        held0, window = len(self._chunks), self.thresholds.window
        at = np.asarray(due)
        popped = np.maximum(0, held0 + at + 1 - window)
        old = [c[2] for c in itertools.islice(self._chunks, min(int(popped[-1]), held0))]
        zero = np.zeros((1, self._nbins), dtype=np.int64)
        old_sums = np.concatenate([zero, np.cumsum(np.stack(old), axis=0)]) if old else zero
        new_sums = np.concatenate([zero, np.cumsum(flats, axis=0)])
        windows = (
            self._window_flat
            + new_sums[at + 1]
            - old_sums[np.minimum(popped, held0)]
            - new_sums[np.maximum(0, popped - held0)]
        )
        psis = self._psis(windows)
        hr = self.hit_rate  # no outcome within a run: the caller resolves none (and one renews the stamp)
        _, alarms, calms = self._levels(psis, hr)
        up: list[bool] = np.asarray(alarms.any(axis=1)).tolist()
        state, n, after = CheckState(self.detected, self._calm), m, []
        for j, alarm, calm_now in zip(due, up, calms.tolist(), strict=True):
            detected, calm, changed = self._hysteresis(state.detected, state.calm, alarm, calm_now)
            if changed:
                n = j
                break
            state = CheckState(detected, calm)
            after.append(state)
        k = len(after)
        return QuietDrift(n, flats, rows, tuple(due[:k]), tuple(after), psis[:k], self._stamp)

    def _due_bars(self, held: int, m: int) -> list[int]:
        """The bars (0-based) among the next `m` new bar times at which `_push` runs a check, with `held` bars
        in the window now: once the window is full and `check_every` bars after the last check (`_due`), then
        every `check_every` bars (the window stays full)."""
        every = self.thresholds.check_every
        first = max(0, self.thresholds.window - held - 1, every - self._since_check - 1)
        return list(range(first, m, every))

    def take_quiet(self, plan: QuietDrift, n: int, keys: Sequence[object]) -> None:
        """What `observe_binned` of the first `n` bars of `plan` (n <= plan.n), with their `keys`, leaves,
        bit for bit, in array operations rather than bar by bar: the counts and rows (integer sums, exact in
        any order), the chunks (the oldest beyond `window` dropped, the new bars' appended), the bars since
        the last check, and the state the last due check among them left (found by `plan_quiet`: no check
        runs). Each bar must be a new bar time (a key equal to the one before would join that bar, which
        the plan did not count); a plan is taken only in the state it was made from."""
        if plan.stamp != self._stamp:
            raise RuntimeError("take_quiet of a plan made from another state of the monitor")
        if not 0 <= n <= plan.n or len(keys) != n:
            raise ValueError(f"take_quiet of {n} bars ({len(keys)} keys) from a plan of {plan.n}")
        if n == 0:
            return
        last_key = self._chunks[-1][0] if self._chunks else None
        if any(b is not None and a == b for a, b in zip([last_key, *keys[:-1]], keys, strict=True)):
            raise ValueError(
                "take_quiet of a bar with the key of the bar before (each must be a new bar time)"
            )
        window, rows = self.thresholds.window, plan.rows
        popped = max(0, len(self._chunks) + n - window)
        new_popped = max(0, popped - len(self._chunks))  # new bars pushed out within the run itself
        # copied out of the plan: the chunks then neither keep the whole run's counts alive nor write into the
        # plan when a later bar joins the last of them
        kept = plan.flats[new_popped:n].copy()
        out = kept.sum(axis=0)
        for _ in range(popped - new_popped):
            _, r, old = self._chunks.popleft()
            out -= old
            self.rows_in_window -= r
        self._window_flat += out  # in place: `_window_counts` are views of it
        self.rows_seen += n * rows
        self.rows_in_window += (n - new_popped) * rows
        self._chunks.extend([key, rows, flat] for key, flat in zip(keys[new_popped:], kept, strict=True))
        checked = bisect.bisect_left(plan.due, n)  # the due checks among the first n bars
        if checked:
            self._since_check = n - 1 - plan.due[checked - 1]
            self.detected, self._calm = plan.after[checked - 1]
            psis, hr = plan.psis[checked - 1 : checked], self.hit_rate
            mean, alarms, _ = self._levels(psis, hr)
            self.last = self._result(psis[0], float(mean[0]), alarms[0], hr, changed=False)
        else:
            self._since_check += n
        self._stamp = next(_STAMPS)

    def _flats(self, idx: np.ndarray) -> np.ndarray:
        """Each bar's bin counts (bars, bins) in one pass: `observe_binned`'s bincount per bar."""
        m = int(idx.shape[0])
        flat = idx.reshape(m, int(np.prod(idx.shape[1:])))
        at = flat + (np.arange(m) * self._nbins)[:, None]
        return np.bincount(at[flat >= 0], minlength=m * self._nbins).reshape(m, self._nbins)

    def _columns(self, flat: np.ndarray) -> list[np.ndarray]:
        """Per-column views of flat counts."""
        return [flat[lo:hi] for lo, hi in self._bounds]

    def record_outcome(self, hit: bool) -> None:
        self._stamp = next(_STAMPS)
        self._outcomes.append(bool(hit))

    @property
    def hit_rate(self) -> float | None:
        if len(self._outcomes) < self.thresholds.hit_rate_min_count:
            return None
        return sum(self._outcomes) / len(self._outcomes)

    def check(self) -> DriftResult:
        """Score the window, move the hysteresis, and say so (`last`)."""
        self._stamp = next(_STAMPS)
        psis = self._psis(self._window_flat[None, :])
        hr = self.hit_rate
        mean, alarms, calm = self._levels(psis, hr)
        self.detected, self._calm, changed = self._hysteresis(
            self.detected, self._calm, bool(alarms[0].any()), bool(calm[0])
        )
        self.last = self._result(psis[0], float(mean[0]), alarms[0], hr, changed)
        return self.last

    def _psis(self, flat: np.ndarray) -> np.ndarray:
        """The PSI of every column (the features, then the prediction) of each row of window counts `flat`
        (w, bins): (w, columns). Each group's rows of every window are scored in one `psi_rows`, whose
        operations are element by element and row by row, the same whatever w (the tests hold a window
        scored alone bit-equal to the same window among others): a run's dry checks are scored at once.
        Both operands are laid out in C order: fancy indexing of a 2-D array returns a strided layout,
        arithmetic on two such operands keeps it, and a row sum over it adds in another order (ulps away)."""
        w = flat.shape[0]
        psis = np.empty((w, len(self._refs)))
        for cols, where, expected in self._groups:
            g, b = where.shape
            counts = np.ascontiguousarray(flat[:, where].reshape(w * g, b))
            shares = np.ascontiguousarray(np.broadcast_to(expected, (w, g, b)).reshape(w * g, b))
            psis[:, cols] = psi_rows(shares, counts).reshape(w, g)
        return psis

    def _levels(self, psis: np.ndarray, hr: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of checks of column PSIs `psis` (w, columns) with hit rate `hr`: each one's mean feature PSI (w,),
        which of its alarms are up (w, 3: mean feature PSI, prediction PSI, hit rate) and whether it is calm
        (w,: every score back below its clear threshold). Row by row the same whatever w (each row's features
        side by side, summed as the row alone: the tests hold it), so a run's dry checks are judged at once."""
        t = self.thresholds
        # The mean over features, not the max: one slow feature (a 24-bar volatility) barely moves inside a
        # short window, so its own PSI is noisy; a shift of the whole input distribution moves the mean.
        mean = np.mean(psis[:, : len(self.feature_names)], axis=1)
        pred = psis[:, -1]
        hit_alarm = hr is not None and hr < t.hit_rate_min
        alarms = np.column_stack(
            [mean >= t.psi_detect, pred >= t.prediction_psi_detect, np.full(mean.shape, hit_alarm)]
        )
        calm = (mean < t.psi_clear) & (pred < t.prediction_psi_clear) & (not hit_alarm)
        return mean, alarms, calm

    def _hysteresis(
        self, detected: bool, calm_checks: int, alarm: bool, calm: bool
    ) -> tuple[bool, int, bool]:
        """(detected, consecutive calm checks, changed) after a check (any `alarm` up; `calm`) from the state
        (`detected`, `calm_checks`): detected at the first alarm, cleared after `clear_after_checks` calm
        checks in a row. Pure: the dry checks of a run (`plan_quiet`) chain it without touching the monitor."""
        if not detected and alarm:
            return True, 0, True
        if detected:
            calm_checks = calm_checks + 1 if calm else 0
            if calm_checks >= self.thresholds.clear_after_checks:
                return False, 0, True
        return detected, calm_checks, False

    def _result(
        self, psis: np.ndarray, mean_psi: float, up: np.ndarray, hr: float | None, changed: bool
    ) -> DriftResult:
        """What a check says of its column PSIs `psis` (columns,), their feature mean and its alarms `up`
        (`_levels`), with the monitor's state after it (`detected`, `_calm`)."""
        t = self.thresholds
        scores = {name: float(psis[j]) for j, name in enumerate(self.feature_names)}
        worst = max(scores, key=lambda name: scores[name])
        scores["features_mean"] = mean_psi
        scores["prediction"] = float(psis[-1])
        if hr is not None:
            scores["hit_rate"] = hr
        alarms = []
        if up[0]:
            alarms.append(f"mean feature PSI {mean_psi:.2f} (worst {worst}={scores[worst]:.2f})")
        if up[1]:
            alarms.append(f"prediction PSI {scores['prediction']:.2f}")
        if up[2]:
            alarms.append(f"hit rate {hr:.2f} < {t.hit_rate_min:.2f}")
        if alarms:
            reason = "; ".join(alarms)
        elif self.detected:
            reason = (
                f"still drifting (calm checks {self._calm}/{t.clear_after_checks}, "
                f"mean feature PSI {mean_psi:.2f})"
            )
        else:
            reason = f"within reference (mean feature PSI {mean_psi:.2f}, worst {worst}={scores[worst]:.2f})"
        return DriftResult(self.detected, changed, {k: round(v, 6) for k, v in scores.items()}, reason)


class HitRateTracker:
    """Resolves past BUY/SELL signals once `horizon` more bars of their symbol have closed."""

    def __init__(self, horizon: int, fee_rate: float):
        self.horizon = horizon
        self.cost = -2.0 * math.log(1.0 - fee_rate)
        self._pending: dict[str, deque[list[Any]]] = {}

    def pending(self, symbol: str) -> int:
        """Signals of `symbol` whose horizon has not passed yet (0: `on_bar` changes nothing)."""
        return len(self._pending.get(symbol) or ())

    def record(self, symbol: str, side: str, price: float) -> None:
        self._pending.setdefault(symbol, deque()).append([self.horizon, side, price])

    def on_bar(self, symbol: str, close: float) -> list[bool]:
        """Call once per closed bar of `symbol`, before recording a new signal on that bar; returns the
        outcomes (hit or not, net of fees) of signals whose horizon has just passed."""
        q = self._pending.get(symbol)
        if not q:
            return []
        for item in q:
            item[0] -= 1
        out = []
        while q and q[0][0] <= 0:
            _, side, entry = q.popleft()
            r = math.log(close / entry)
            out.append((r if side == "BUY" else -r) - self.cost > 0)
        return out
