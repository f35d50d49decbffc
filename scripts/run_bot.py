"""`python -m scripts.run_bot [--config configs/bot.yaml]`: the runbook's name for `bnml up`."""

import argparse
import sys

from bnml.launcher import run

if __name__ == "__main__":
    p = argparse.ArgumentParser(description="start the BN-ML suite locally (paper mode by default)")
    p.add_argument("--config", default=None)
    sys.exit(run(p.parse_args().config))
