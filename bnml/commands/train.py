"""`bnml train`: train the signal model (walk-forward report, artefact, `current`), as `python -m services.signal.train`."""

from __future__ import annotations


def register(sub) -> None:
    from services.signal.cli_args import EPILOG, add_arguments

    p = sub.add_parser(
        "train", help="train the signal model and write artifacts/models/<version>/", epilog=EPILOG
    )
    add_arguments(p)
    p.set_defaults(func=_train)


def _train(args) -> int:
    from services.signal.train import run_from_args

    return run_from_args(args, args.config)
