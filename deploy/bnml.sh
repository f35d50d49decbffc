#!/bin/sh
# The `bnml` command of the image (/usr/local/bin/bnml): the project runs from /app on PYTHONPATH and is not
# pip-installed, so this stands in for the console script pyproject.toml declares (bnml = "bnml.cli:main").
#   docker compose -f deploy/docker-compose.yml exec ops-api bnml status
exec python -m bnml.cli "$@"
