#!/usr/bin/env bash
# Starts a disposable target host: a container booting systemd and sshd (no Docker), on a
# Docker network with a fixed address, reachable as root and as `deploy` (sudo) with the
# given SSH key. The network is the host's own (named NAME), or NETWORK when given: several
# hosts on one NETWORK form a private network, as the hosts of a spread deployment need.
#
#   scripts/start-host.sh NAME ADDRESS SUBNET PUBLIC_KEY_FILE [NETWORK]
#   scripts/start-host.sh synprov-demo 172.31.241.10 172.31.241.0/24 ~/.ssh/id_ed25519.pub
#   scripts/start-host.sh fleet1 172.31.243.11 172.31.243.0/24 key.pub synprov-fleet
#
# The nested Docker engine keeps its store in a volume (NAME-docker), or in the directory
# DOCKER_STORE names (a benchmark gives each host a fresh filesystem of its own there).
#
# Remove it with: docker rm -f -v NAME; docker volume rm NAME-docker; docker network rm NETWORK
# Needs the synprov/host:bookworm image (scripts/build-images.sh).
set -euo pipefail
name=$1 address=$2 subnet=$3 key=$4 network=${5:-$1}

docker rm -f -v "$name" >/dev/null 2>&1 || true
docker volume rm -f "$name-docker" >/dev/null 2>&1 || true
if [ "$network" = "$name" ]; then
    docker network rm "$network" >/dev/null 2>&1 || true
fi
# A shared network is created by its first host. (Docker 20.10 lets two concurrent creates
# make two networks of one name: create it before starting hosts in parallel.)
docker network inspect "$network" >/dev/null 2>&1 ||
    docker network create --subnet "$subnet" "$network" >/dev/null
# systemd as PID 1 needs these (TESTBED.md: --privileged fails here). SYS_PTRACE lets the
# nested engine exec (healthchecks) into containers whose process is not root. The volume gives the
# nested Docker engine overlay2 instead of vfs.
docker run -d --name "$name" --hostname "$name" --network "$network" --ip "$address" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD --cap-add SYS_PTRACE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns=host --tmpfs /run --tmpfs /run/lock \
    -v "${DOCKER_STORE:-$name-docker}:/var/lib/docker" synprov/host:bookworm >/dev/null
# The key logs in as root and as `deploy` (a user with passwordless sudo, for `become`).
docker cp "$key" "$name:/root/.ssh/authorized_keys"
docker exec "$name" sh -c 'chown root:root /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys &&
    cp /root/.ssh/authorized_keys /home/deploy/.ssh/authorized_keys && chown deploy:deploy /home/deploy/.ssh/authorized_keys'
for _ in $(seq 120); do
    if docker exec "$name" systemctl is-active ssh >/dev/null 2>&1; then
        echo "$name is up at $address (sshd under systemd)"
        exit 0
    fi
    sleep 0.5
done
echo "$name: sshd did not start" >&2
exit 1
