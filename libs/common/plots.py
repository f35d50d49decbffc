"""The one matplotlib helper: an equity chart (lines against time, the no-trade level, shaded spans) as PNG bytes.

Used by the training report (`services/signal/train.py`) and the backtest report (`backtest/report.py`).
matplotlib is imported here, on first use, with the headless Agg backend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any


def equity_png(
    times: Sequence[Any],
    lines: Sequence[tuple[Sequence[float], str, float]],
    title: str,
    *,
    spans: Sequence[tuple[Any, Any]] = (),
    span_label: str = "",
) -> bytes:
    """`lines`: (values, label, line width) over `times`; a dashed line at 1.0 ("no trade"); `spans`: (start, end)
    ranges shaded in red (labelled once with `span_label`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        for values, label, lw in lines:
            ax.plot(times, values, label=label, lw=lw)
        ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="no trade")
        for i, (start, end) in enumerate(spans):
            ax.axvspan(start, end, color="red", alpha=0.08, label=span_label if i == 0 else None)
        ax.set_title(title)
        ax.set_ylabel("equity (start = 1)")
        ax.legend(loc="best", fontsize=8)
        fig.autofmt_xdate()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)
