"""Arguments of `bnml train` / `python -m services.signal.train` (light: no ML imports at CLI start)."""

from __future__ import annotations

import argparse

EPILOG = (
    "exit codes: 0 promoted (or written with --no-promote), 1 error, 2 bad configuration, "
    "3 written but not promoted (the promotion gate failed), 4 --force-promote refused (mode: live)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", default=None, help="OHLCV file (csv/json/parquet) or 'synthetic' (default: config)"
    )
    p.add_argument("--horizon", type=int, default=None, help="label horizon, bars")
    p.add_argument("--folds", type=int, default=None, help="walk-forward folds")
    p.add_argument("--model", choices=("logistic", "hgb"), default=None)
    p.add_argument("--threshold", type=float, default=None, help="probability threshold for BUY/SELL")
    p.add_argument("--no-promote", action="store_true", help="do not make the new model current")
    p.add_argument(
        "--force-promote",
        action="store_true",
        help="make it current even if the gate fails (paper mode only; recorded and audited)",
    )
    p.add_argument(
        "--symbol", default=None, help="symbol the data is of, e.g. BTC/USDT (default: from the file name)"
    )
    p.add_argument("--models-dir", default=None, help="registry directory (default: signal.models_dir)")
    p.add_argument(
        "--allow-gaps",
        action="store_true",
        help="accept an OHLCV file with missing bars (exchange outages); features then span the gaps",
    )
