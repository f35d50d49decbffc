#!/bin/sh
# Entrypoint of the BN-ML image: refuse to start without the configuration compose mounts, rather than run
# on the built-in defaults without saying so, then run the command (`python -m services.<name>`, ...).
set -eu
config="${BNML_CONFIG:-/app/configs/bot.yaml}"
if [ ! -f "$config" ]; then
  echo "bnml: configuration $config not found (or not a file): mount configs/bot.yaml there" \
       "(deploy/docker-compose.yml does: BNML_CONFIG_FILE in deploy/.env names the host file)" >&2
  exit 2
fi
exec "$@"
