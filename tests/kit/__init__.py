"""Test kit: builders (factory functions that make contracts, rows and wiring for tests), kept out of conftest.py
so a test can import what it builds with; the fixtures in conftest.py are thin wrappers over these."""
