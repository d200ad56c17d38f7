#!/usr/bin/env bash
# First-apply benchmark: two bare hosts (containers booting systemd and sshd, no Docker) get
# the same verified stack, in the same run: one from a plain shell script, the other from
# `synprov apply`. The plain script does the least a script can: install docker.io, stream the
# Compose v2 binary and every image in one `docker save | docker load`, copy the rendered files
# (`synprov render`, the same files), `docker compose up -d --wait`. Prints both times, the
# ratio and synprov's slowest steps (`--timings`). Asserts nothing.
#
# Each host's Docker store is a new ext4 filesystem of its own (a loop device on a sparse
# file on this machine's disk), as a new server's disk is: on a filesystem shared with
# earlier runs, files freed minutes before slowed the first `docker load` and not the
# second. Each run has the machine to itself: the images are read once before either (so neither
# `docker save` finds them in the page cache where the other did not), and the plain
# script's stack is stopped once verified, so that its 16 containers and their healthchecks
# do not run beside synprov's apply.
#
#   scripts/bench-first-apply.sh            # the guide's topology (13 Synapse processes)
#   ROOMS=1 SENDERS=1 scripts/bench-first-apply.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synprov-target}"
export PATH="/usr/sbin:/sbin:$PATH"
export SYNPROV_MASTER_KEY=benchmark-master-key-0123456789abcdef

network=synprov-bench
subnet=172.31.246.0/24
plain=synprov-bench-plain plain_ip=172.31.246.10
tool=synprov-bench-synprov tool_ip=172.31.246.11
deploy=/opt/synapse/bench
images=(synprov/synapse:1.163 synprov/postgres:15 synprov/redis:7 synprov/nginx:1.22)

bash scripts/start-dockerd.sh >/dev/null
bash scripts/install-compose.sh
bash scripts/build-images.sh >/dev/null
cargo build --release --locked -q
synprov="$CARGO_TARGET_DIR/release/synprov"
compose_plugin=$(readlink -f "$HOME/.docker/cli-plugins/docker-compose")

work=$(mktemp -d /tmp/synprov-bench-first.XXXXXX)
cleanup() {
    docker rm -f -v "$plain" "$tool" >/dev/null 2>&1 || true
    umount "$work/$plain.store" "$work/$tool.store" >/dev/null 2>&1 || true
    docker network rm "$network" >/dev/null 2>&1 || true
    rm -rf "$work"
}
# `new_store HOST`: a new ext4 filesystem for HOST's Docker store, mounted at
# $work/HOST.store.
new_store() {
    truncate -s 16G "$work/$1.img"
    # Its inode tables written now, not by ext4's lazy init during the runs.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/$1.img"
    mkdir "$work/$1.store"
    mount -o loop "$work/$1.img" "$work/$1.store"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
docker network create --subnet "$subnet" "$network" >/dev/null
for host in "$plain" "$tool"; do
    new_store "$host"
done
DOCKER_STORE=$work/$plain.store bash scripts/start-host.sh "$plain" "$plain_ip" "$subnet" "$work/key.pub" "$network"
DOCKER_STORE=$work/$tool.store bash scripts/start-host.sh "$tool" "$tool_ip" "$subnet" "$work/key.pub" "$network"

cat >"$work/bench.toml" <<TOML
[hosts.bench]
address = "$tool_ip"
user = "root"
identity_file = "$work/key"
host_key_checking = "accept-new"

[deployments.bench]
server_name = "bench.example"
public_baseurl = "http://$tool_ip:8008/"
host = "bench"
deploy_dir = "$deploy"

[deployments.bench.workers]
rooms = ${ROOMS:-4}
sender = ${SENDERS:-4}

[deployments.bench.images]
preload = true
synapse = "${images[0]}"
postgres = "${images[1]}"
redis = "${images[2]}"
nginx = "${images[3]}"
TOML
"$synprov" render "$work/bench.toml" --out "$work/rendered" >/dev/null

on_plain() { ssh -q -i "$work/key" -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$work/known_hosts" "root@$plain_ip" "$@"; }

now() { date +%s.%N; }
steps=()
# `timed NAME COMMAND...`: runs the plain script's step, noting how long it took.
timed() {
    local name=$1 began
    shift
    began=$(now)
    "$@"
    steps+=("$(printf '%8.1f  %s' "$(awk "BEGIN { print $(now) - $began }")" "$name")")
}
send_images() { docker save "${images[@]}" | on_plain 'docker load -q >/dev/null'; }
send_files() {
    tar -C "$work/rendered/bench/bench" -c . | on_plain "mkdir -p $deploy && tar -C $deploy -x &&
        cd $deploy && mkdir -p media sockets redis && chmod 777 sockets &&
        logs=\$(grep -o '\./logs/[^:]*' docker-compose.yml | sort -u) && mkdir -p \$logs &&
        chown -R 1000:1000 synapse media redis \$(printf '%s\n' \$logs | grep -v /nginx)"
}
up() {
    on_plain "cd $deploy && docker compose up -d --wait" >"$work/plain.out" 2>&1 || {
        cat "$work/plain.out"
        exit 1
    }
}
docker save "${images[@]}" >/dev/null
start=$(now)
timed "install docker.io" on_plain 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null'
timed "send the Compose v2 plugin" on_plain 'install -D -m 755 /dev/stdin /usr/local/lib/docker/cli-plugins/docker-compose' <"$compose_plugin"
timed "docker save | docker load, every image" send_images
timed "copy the files" send_files
timed "docker compose up -d --wait" up
plain_seconds=$(awk "BEGIN { print $(now) - $start }")
services=$(on_plain "cd $deploy && docker compose ps -q | wc -l")
on_plain "cd $deploy && docker compose stop" >/dev/null 2>&1

export SYNPROV_KNOWN_HOSTS=$work/known_hosts
start=$(now)
"$synprov" apply --timings "$work/bench.toml" >"$work/synprov.out" 2>&1 || {
    cat "$work/synprov.out"
    exit 1
}
synprov_seconds=$(awk "BEGIN { print $(now) - $start }")

printf '\nbare host to a verified stack of %s containers (same files, same images)\n' "$services"
printf '%-14s %8s\n' "" seconds
printf '%-14s %8.1f\n' "plain script" "$plain_seconds" synprov "$synprov_seconds"
printf '%-14s %8.2f\n' ratio "$(awk "BEGIN { print $synprov_seconds / $plain_seconds }")"
printf '\nplain script, its steps:\n seconds  step\n'
printf '%s\n' "${steps[@]}"
printf '\nsynprov, slowest steps:\n'
sed -n '/slowest steps/,$p' "$work/synprov.out" | tail -n +2
