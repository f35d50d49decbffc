# syntax=docker/dockerfile:1
# One image for the five BN-ML services; the command picks the service:
#   docker run bnml python -m services.risk        (compose does this for each service)
#   docker run bnml python -m bnml.cli migrate     (the one-shot migration service)
# Build from the repo root: docker build -t bnml .   (compose: docker compose -f deploy/docker-compose.yml build)
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BNML_LOG_FORMAT=json \
    BNML_CONFIG=/app/configs/bot.yaml \
    PYTHONPATH=/app

# Pinned runtime dependencies first (own layer: rebuilt only when the lock changes). --no-deps: the lock is
# the complete closure, so nothing unpinned can slip in.
COPY deploy/requirements.lock /tmp/requirements.lock
RUN pip install --no-deps -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

WORKDIR /app
# The source runs from /app (PYTHONPATH), exactly as `python -m services.<name>` runs in the repo.
COPY pyproject.toml ./
COPY libs ./libs
COPY services ./services
COPY bnml ./bnml
COPY scripts ./scripts
COPY configs ./configs
COPY data ./data
COPY deploy/healthcheck.py ./deploy/healthcheck.py
RUN python -m compileall -q libs services bnml scripts \
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

CMD ["python", "-m", "services.ops_api"]
