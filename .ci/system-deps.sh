#!/usr/bin/env bash
# System packages the deploy tests need (idempotent, quiet):
#   docker-compose  -> `docker-compose config` validates deploy/docker-compose.yml (no Docker engine needed)
#   prometheus      -> `promtool check config|rules`, `promtool test rules`, and a real Prometheus for the
#                      dashboards/alerts integration test
#   prometheus-alertmanager -> `amtool check-config` and a real Alertmanager for the alert-delivery test
#   chromium        -> the ops console's browser test (Playwright drives this binary; it never downloads one)
# Runs as root, or through sudo when available; does nothing when the binaries are already there.
set -euo pipefail

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
{ command -v amtool >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1; } \
  || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "system-deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1
  fi
else SUDO=""; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# --no-install-recommends keeps it small; the prometheus package's service is not started (no systemd in CI)
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system-deps: installed ${need[*]}"
