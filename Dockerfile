# syntax=docker/dockerfile:1
# One image for the five BN-ML services; the command picks the service:
#   docker run bnml python -m services.risk        (compose does this for each service)
#   docker run bnml python -m bnml.cli migrate     (the one-shot migration service)
#   docker compose exec ops-api bnml status        (the operators' command line, inside a running container)
# Build from the repo root: docker build -t bnml .   (compose: docker compose -f deploy/docker-compose.yml build)
# Builds on linux/amd64 and linux/arm64 alike: every locked package has a wheel for both (make lock-check), and
# pgserver (the embedded Postgres of `make run`, x86-64 only) is an extra the image does not install.
# An exact Python release on a named Debian release, so a rebuild does not move under the lock. Debian 13 (trixie)
# for its postgresql-client 17: ops_api's backups need a pg_dump at least as new as the compose Postgres (16);
# bookworm's is 15, which refuses a 16 server.
FROM python:3.11.13-slim-trixie AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BNML_LOG_FORMAT=json \
    BNML_CONFIG=/app/configs/bot.yaml \
    PYTHONPATH=/app

RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

# Pinned runtime dependencies first (own layer: rebuilt only when the lock changes). --require-hashes: every
# file is checked against the lock's SHA-256, and every dependency must be pinned in it, so nothing unpinned
# or altered can slip in.
COPY deploy/requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

WORKDIR /app
# The source runs from /app (PYTHONPATH), exactly as `python -m services.<name>` runs in the repo.
# configs/bot.yaml is NOT in the image: compose mounts it (deploy/docker-compose.yml), so editing it and
# restarting changes the suite. The exchange filters (configs/markets) are reference data and stay baked in.
COPY pyproject.toml ./
COPY libs ./libs
COPY services ./services
COPY bnml ./bnml
COPY scripts ./scripts
COPY configs/markets ./configs/markets
COPY data ./data
COPY deploy/healthcheck.py ./deploy/healthcheck.py
COPY deploy/entrypoint.sh ./deploy/entrypoint.sh
COPY deploy/bnml.sh /usr/local/bin/bnml
RUN python -m compileall -q libs services bnml scripts \
 && chmod 0755 /usr/local/bin/bnml /app/deploy/entrypoint.sh \
 && groupadd --system --gid 10001 bnml \
 && useradd --system --uid 10001 --gid bnml --home-dir /app --shell /usr/sbin/nologin bnml \
 && mkdir -p /app/artifacts \
 && chown -R bnml:bnml /app/artifacts

USER bnml
VOLUME ["/app/artifacts"]

# Healthy = the service's /metrics answers with bnml_<service>_up 1 (and, for ops_api, GET /health is 200).
# The service is read from the container's command (`python -m services.<name>`) or BNML_SERVICE.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/app/deploy/healthcheck.py"]

# The entrypoint refuses to start without the mounted configuration (it names the missing file).
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["python", "-m", "services.ops_api"]
