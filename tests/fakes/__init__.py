"""Test fakes of external systems (never used by production code)."""
