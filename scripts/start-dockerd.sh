#!/usr/bin/env bash
# Makes sure a Docker engine answers on this machine. Idempotent; needs root.
#
# This machine has no init system (PID 1 is not systemd), so when `docker info` fails the
# script installs Debian's docker.io if `dockerd` is missing and starts dockerd itself,
# detached, logging to /var/log/dockerd.log. Debian's SysV script (`service docker start`)
# is not used: it runs `ulimit -n 1048576`, above this machine's hard limit.
#
# A docker CLI may already be on PATH (e.g. /usr/local/bin/docker, CLI 28) without any
# daemon: that is fine, it talks to the dockerd started here.
set -euo pipefail

log() { printf '[start-dockerd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
LOG_FILE="${DOCKERD_LOG:-/var/log/dockerd.log}"
WAIT_SECONDS="${DOCKERD_WAIT:-60}"

engine_up() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_up; then
    log "Docker engine already answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "the Docker engine is not answering and starting it needs root"

if ! command -v dockerd >/dev/null 2>&1; then
    log "dockerd is missing: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    # Keep the CLI already on PATH, if any: docker.io brings /usr/bin/docker as well, which
    # comes later on PATH than /usr/local/bin.
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
        || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io is installed but dockerd is not on PATH"
fi
command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH (docker.io should have brought one)"

if pgrep -x dockerd >/dev/null 2>&1; then
    log "a dockerd process exists but does not answer yet: waiting for it"
else
    # A stale pid file from an earlier, killed dockerd stops a new one from starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    log "starting dockerd detached (log: $LOG_FILE)"
    mkdir -p "$(dirname "$LOG_FILE")"
    setsid dockerd >>"$LOG_FILE" 2>&1 </dev/null &
fi

start=$SECONDS
until engine_up; do
    if [ $((SECONDS - start)) -ge "$WAIT_SECONDS" ]; then
        log "last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
        die "the Docker engine did not answer \`docker info\` within ${WAIT_SECONDS}s"
    fi
    sleep 1
done
log "Docker engine answering after $((SECONDS - start))s ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), storage driver $(docker info --format '{{.Driver}}' 2>/dev/null || echo '?'))"
