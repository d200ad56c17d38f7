#!/usr/bin/env bash
# Builds, locally, every image the end-to-end tests need. No registry is reachable from the
# test machines, so nothing is pulled: the base is a debootstrap of Debian 12 imported into
# Docker, and every other image is built FROM it with the legacy builder.
#
#   scripts/build-images.sh                 # all images (reusing up-to-date ones)
#   scripts/build-images.sh synapse nginx   # only these (and the base, if needed)
#   FORCE=1 scripts/build-images.sh         # rebuild even up-to-date images
#   VERBOSE=1 scripts/build-images.sh       # stream build output instead of logging it
#   SERIAL=1 scripts/build-images.sh        # one image at a time (default: the images on
#                                           # top of the base build in parallel)
#
# Images (the Dockerfiles and entry scripts are under tests/bed/<name>/):
#   synprov/debian-base:bookworm  debootstrap --variant=minbase bookworm, `docker import`ed
#   synprov/host:bookworm         a systemd "server" with sshd, sudo and a `deploy` user
#   synprov/synapse:1.163         Synapse from PyPI, with the official image's /start.py interface
#                                 (dropping root to UID:GID, as the official image does)
#   synprov/postgres:15           Debian's PostgreSQL 15, official image's entrypoint behaviour
#   synprov/redis:7               Debian's Redis 7
#   synprov/nginx:1.22            Debian's Nginx 1.22
#   synprov/coturn:4.6            Debian's coturn 4.6 (the turn example plugin's TURN server)
#   synprov/restic:0.14           Debian's restic 0.14 and an OpenSSH client, `restic` as the
#                                 entrypoint (the restic/restic image's interface): backups
#   synprov/lego:4.9              Debian's lego 4.9 and openssl (ACME issuance and renewal)
#
# An image is reused when its tag exists and carries the label org.synprov.bed.hash of the
# current recipe (its build context, its build arguments and the ID of the base it is built
# on); otherwise it is rebuilt. Needs root (debootstrap, and dockerd when it is not running).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BED="$ROOT/tests/bed"

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DOCKER_BUILDKIT=0

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.*}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
LABEL=org.synprov.bed

BASE_TAG=synprov/debian-base:bookworm
declare -A TAGS=(
    [host]=synprov/host:bookworm
    [synapse]=synprov/synapse:1.163
    [postgres]=synprov/postgres:15
    [redis]=synprov/redis:7
    [nginx]=synprov/nginx:1.22
    [coturn]=synprov/coturn:4.6
    [restic]=synprov/restic:0.14
    [lego]=synprov/lego:4.9
)
ORDER=(host synapse postgres redis nginx coturn restic lego)

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, and starting dockerd)"

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${ORDER[@]}")
for name in "${wanted[@]}"; do
    [ -n "${TAGS[$name]:-}" ] || die "unknown image '$name' (known: ${ORDER[*]})"
done

bash "$ROOT/scripts/start-dockerd.sh"

WORK=$(mktemp -d /var/tmp/synprov-bed.XXXXXX)
LOGS="${BED_LOG_DIR:-/var/tmp/synprov-bed-logs}"
mkdir -p "$LOGS"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# The recipe hash an existing image carries, or nothing when the tag does not exist.
image_hash() {
    docker image inspect --format "{{ index .Config.Labels \"$LABEL.hash\" }}" "$1" 2>/dev/null || true
}

image_id() { docker image inspect --format '{{.Id}}' "$1"; }

# Runs a build step, its output in a log file (or streamed with VERBOSE=1); on failure the
# end of the log is shown.
run_logged() {
    local logfile=$1
    shift
    if [ -n "${VERBOSE:-}" ]; then
        "$@" 2>&1 | tee "$logfile"
        return "${PIPESTATUS[0]}"
    fi
    if ! "$@" >"$logfile" 2>&1; then
        log "failed; last lines of $logfile:"
        tail -n 40 "$logfile" >&2
        return 1
    fi
}

# Build times, one file per tag (derived images build in background subshells).
TIMES_DIR="$WORK/times"
mkdir -p "$TIMES_DIR"
set_time() { printf '%s\n' "$2" >"$TIMES_DIR/${1//\//_}"; }
get_time() { cat "$TIMES_DIR/${1//\//_}" 2>/dev/null || echo '-'; }

# --- synprov/debian-base:bookworm ------------------------------------------------------------

# Makes the debootstrapped tree a container base, as Debian's own Docker images do: the
# updates and security suites, no service starts during package installs (policy-rc.d; the
# host image removes it again), no recommends, no docs or translations, no apt caches.
customize_rootfs() {
    local rootfs=$1
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    printf '#!/bin/sh\n# No service starts inside image builds.\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    cat >"$rootfs/etc/apt/apt.conf.d/90synprov-bed" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dpkg::Use-Pty "false";
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90synprov-bed" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*/
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    rm -f "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/bootstrap.log "$rootfs"/var/log/alternatives.log
    rm -f "$rootfs"/var/log/apt/*.log
    # Docker provides these per container.
    : >"$rootfs/etc/resolv.conf"
    rm -f "$rootfs/etc/hostname"
    # systemd (in the host image) generates a machine ID per container when this is empty.
    : >"$rootfs/etc/machine-id"
}

build_base() {
    local hash start rootfs
    hash=$(printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$(declare -f customize_rootfs)" | sha256sum | cut -c1-16)
    if [ -z "${FORCE:-}" ] && [ "$(image_hash "$BASE_TAG")" = "$hash" ]; then
        log "$BASE_TAG: up to date, reused"
        set_time "$BASE_TAG" reused
        return
    fi
    start=$SECONDS
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    rootfs="$WORK/rootfs"
    log "$BASE_TAG: debootstrap --variant=minbase $SUITE (log: $LOGS/debian-base.log)"
    run_logged "$LOGS/debian-base.log" debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR"
    customize_rootfs "$rootfs"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        --change "LABEL $LABEL.name=debian-base $LABEL.hash=$hash" \
        - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
    set_time "$BASE_TAG" "$((SECONDS - start))s"
    log "$BASE_TAG: built in $((SECONDS - start))s"
}

# --- derived images ---------------------------------------------------------------------------

# Hash of a build context directory: names, modes and contents of its files.
context_hash() {
    (cd "$1" && find . -type f -printf '%p %m\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

build_image() {
    local name=$1 tag=${TAGS[$1]} dir="$BED/$1" ctx hash start
    local -a args=()
    [ -f "$dir/Dockerfile" ] || die "$dir/Dockerfile is missing"
    if [ "$name" = synapse ]; then
        args+=(--build-arg "SYNAPSE_VERSION=$SYNAPSE_VERSION")
    fi
    hash=$({ context_hash "$dir"; image_id "$BASE_TAG"; printf '%s\n' "${args[@]}"; } | sha256sum | cut -c1-16)
    if [ -z "${FORCE:-}" ] && [ "$(image_hash "$tag")" = "$hash" ]; then
        log "$tag: up to date, reused"
        set_time "$tag" reused
        return
    fi
    start=$SECONDS
    ctx="$WORK/$name"
    cp -a "$dir" "$ctx"
    if [ "$name" = synapse ]; then
        # pip inside the build reaches PyPI through a proxy whose CA only the host trusts;
        # the Dockerfile points PIP_CERT at this copy.
        [ -r "$HOST_CA" ] || die "$HOST_CA (the host's CA bundle, for pip in the build) is missing"
        cp "$HOST_CA" "$ctx/host-ca.crt"
    fi
    log "$tag: building (log: $LOGS/$name.log)"
    run_logged "$LOGS/$name.log" docker build --force-rm \
        --label "$LABEL.name=$name" --label "$LABEL.hash=$hash" \
        "${args[@]}" -t "$tag" "$ctx"
    rm -rf "$ctx"
    # The image this tag named before, if any, is now dangling.
    docker image prune -f --filter "label=$LABEL.name=$name" >/dev/null 2>&1 || true
    set_time "$tag" "$((SECONDS - start))s"
    log "$tag: built in $((SECONDS - start))s"
}

total_start=$SECONDS
build_base
failed=()
if [ -n "${SERIAL:-}${VERBOSE:-}" ]; then
    for name in "${wanted[@]}"; do
        build_image "$name" || failed+=("$name")
    done
else
    declare -A pids=()
    for name in "${wanted[@]}"; do
        build_image "$name" &
        pids[$name]=$!
    done
    for name in "${wanted[@]}"; do
        wait "${pids[$name]}" || failed+=("$name")
    done
fi
[ ${#failed[@]} -eq 0 ] || die "failed to build: ${failed[*]} (logs in $LOGS)"

synapse_version=
if [[ " ${wanted[*]} " == *" synapse "* ]]; then
    synapse_version=$(docker run --rm --entrypoint /opt/venv/bin/python "${TAGS[synapse]}" \
        -c 'import synapse; print(synapse.__version__)')
fi

printf '\n%-32s %-10s %s\n' IMAGE BUILD SIZE
for tag in "$BASE_TAG" $(for n in "${wanted[@]}"; do echo "${TAGS[$n]}"; done); do
    size=$(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1000000 }')
    printf '%-32s %-10s %s\n' "$tag" "$(get_time "$tag")" "$size"
done
[ -z "$synapse_version" ] || printf 'Synapse in %s: %s\n' "${TAGS[synapse]}" "$synapse_version"
printf 'total: %ss\n' "$((SECONDS - total_start))"
