"""Where the test servers come from (tests/conftest.py's fixtures): whether a Docker engine answers, and a
database's URL on a server."""

from __future__ import annotations

import os


def docker_answers() -> bool:
    """A Docker engine answers (testcontainers can run), unless BNML_TEST_NO_DOCKER says not to ask."""
    if os.environ.get("BNML_TEST_NO_DOCKER"):
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def with_db(url: str, name: str) -> str:
    """`url` (a server's, any database) naming database `name` instead."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"
