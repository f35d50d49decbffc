"""Subcommands of `bnml`."""
