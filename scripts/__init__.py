"""The runbook's entry points (`python3 -m scripts.<name>`), thin wrappers over `bnml`."""
