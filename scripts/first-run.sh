#!/usr/bin/env bash
# A working homeserver on this machine, in one command, with nothing prepared:
#
#   scripts/first-run.sh            # set it up (run again: it re-applies, changing nothing)
#   scripts/first-run.sh --remove   # remove everything it made
#
# It installs what is missing (a Docker engine, Compose v2, an SSH client), builds the images
# locally (no registry needed) and synprov itself, starts a disposable host (a container
# booting systemd and sshd, as a real server does), runs `synprov apply` on it, then a
# client check through Nginx: a demo user registered, logged in, a message sent and read back.
# It ends with the URL, where the demo user's password is kept (a 0600 file) and the command
# that removes it all. Needs root (it installs packages and starts dockerd when needed).
#
# Environment: SYNPROV_FIRST_RUN_DIR (default ~/.local/share/synprov-first-run) holds the
# inventory, its master key, the SSH key, known_hosts and the password file; SYNPROV names a
# synprov binary to use instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/sbin:/sbin:$PATH"

state=${SYNPROV_FIRST_RUN_DIR:-$HOME/.local/share/synprov-first-run}
host=synprov-first-run
address=172.31.241.10
subnet=172.31.241.0/24
url="http://$address:8008"
user=demo

log() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" = "--remove" ]; then
    docker rm -f -v "$host" >/dev/null 2>&1 || true
    docker volume rm -f "$host-docker" >/dev/null 2>&1 || true
    docker network rm "$host" >/dev/null 2>&1 || true
    rm -rf "$state"
    echo "removed the host container $host, its network and volume, and $state"
    exit 0
elif [ $# -gt 0 ]; then
    sed -n '2,5p' "$0" >&2
    exit 2
fi

log "Docker engine, Compose v2, SSH client"
bash scripts/start-dockerd.sh
bash scripts/install-compose.sh
if ! command -v ssh-keygen >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client >/dev/null
fi

log "images, built locally"
bash scripts/build-images.sh

if [ -n "${SYNPROV:-}" ]; then
    synprov=$SYNPROV
else
    log "synprov (cargo build --release)"
    cargo build --release --locked --quiet
    synprov=${CARGO_TARGET_DIR:-target}/release/synprov
fi

mkdir -p -m 700 "$state"
[ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C synprov-first-run -f "$state/id_ed25519"

if [ "$(docker inspect -f '{{.State.Running}}' "$host" 2>/dev/null)" != true ]; then
    log "a disposable host: $host at $address"
    # A new host has new host keys: forget the old ones.
    rm -f "$state/known_hosts"
    bash scripts/start-host.sh "$host" "$address" "$subnet" "$state/id_ed25519.pub"
fi

inventory=$state/homeserver.toml
cat >"$inventory" <<TOML
# Written by scripts/first-run.sh: one homeserver on the disposable host $host.
[hosts.$host]
address = "$address"
user = "root"
identity_file = "$state/id_ed25519"
# The host is new: learn its key on first contact (strict afterwards, in known_hosts here).
host_key_checking = "accept-new"

[deployments.demo]
server_name = "first-run.localhost"
public_baseurl = "$url/"
host = "$host"
deploy_dir = "/opt/synapse/demo"

[deployments.demo.workers]
rooms = 1
sender = 1

[deployments.demo.images]
# The images built above, streamed to the host over SSH.
preload = true
synapse = "synprov/synapse:1.163"
postgres = "synprov/postgres:15"
redis = "synprov/redis:7"
nginx = "synprov/nginx:1.22"

[deployments.demo.nginx]
# This machine, as the host sees it: the client check registers through the admin API.
admin_allow = ["${subnet%.*/*}.1"]
TOML

log "synprov apply $inventory"
export SYNPROV_KNOWN_HOSTS=$state/known_hosts
"$synprov" apply "$inventory"

log "client check through Nginx"
docker exec "$host" cat /opt/synapse/demo/synapse/homeserver.yaml |
    python3 scripts/first-run-check.py "$url" "$user" "$state/password"

cat <<DONE

Your homeserver is up: $url  (server name first-run.localhost)
  user:       @$user:first-run.localhost
  password:   in $state/password (mode 0600)
  inventory:  $inventory  (SYNPROV_KNOWN_HOSTS=$state/known_hosts $synprov plan $inventory)
  remove all: scripts/first-run.sh --remove
DONE
