"""`python3 -m scripts.kill_switch --config configs/bot.yaml`: engage the kill switch (runbook SEV-1 step 1)."""

import argparse
import sys

from bnml.cli import run

if __name__ == "__main__":
    p = argparse.ArgumentParser(description="engage the global kill switch")
    p.add_argument("--config", default=None)
    p.add_argument("--reason", default="SEV-1: engaged with scripts.kill_switch")
    p.add_argument("--flatten", action="store_true")
    a = p.parse_args()
    argv = (["--config", a.config] if a.config else []) + ["kill-switch", "engage", "--reason", a.reason]
    sys.exit(run(argv + (["--flatten"] if a.flatten else [])))
