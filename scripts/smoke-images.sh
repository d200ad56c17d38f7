#!/usr/bin/env bash
# Quick self-check of the images scripts/build-images.sh builds: each one is started the way
# the deployment (or the end-to-end tests) start it, and poked. Removes everything it started.
#
#   scripts/smoke-images.sh                  # postgres redis synapse nginx lego host
#   scripts/smoke-images.sh postgres host    # only these
#   NESTED_DOCKER=1 scripts/smoke-images.sh host   # also install docker.io in the host over
#                                            # SSH and check the nested engine (slower, apt)
# `COND && pass ... || fail ...` below is an if-then-else: pass always succeeds.
# shellcheck disable=SC2015
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

ALL=(postgres redis synapse nginx lego host)
declare -A TAGS=(
    [host]=synprov/host:bookworm
    [synapse]=synprov/synapse:1.163
    [postgres]=synprov/postgres:15
    [redis]=synprov/redis:7
    [nginx]=synprov/nginx:1.22
    [lego]=synprov/lego:4.9
)
RUN_ID="smoke-$$"
LABEL="org.synprov.bed.smoke=$RUN_ID"

log() { printf '[smoke] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${ALL[@]}")
for name in "${wanted[@]}"; do
    [ -n "${TAGS[$name]:-}" ] || die "unknown image '$name' (known: ${ALL[*]})"
done

bash scripts/start-dockerd.sh
for name in "${wanted[@]}"; do
    docker image inspect "${TAGS[$name]}" >/dev/null 2>&1 \
        || die "${TAGS[$name]} is missing: run scripts/build-images.sh first"
done

WORK=$(mktemp -d /var/tmp/synprov-smoke.XXXXXX)
cleanup() {
    local -a ids
    mapfile -t ids < <(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)
    [ ${#ids[@]} -eq 0 ] || docker rm -f -v "${ids[@]}" >/dev/null 2>&1 || true
    mapfile -t ids < <(docker volume ls -q --filter "label=$LABEL" 2>/dev/null || true)
    [ ${#ids[@]} -eq 0 ] || docker volume rm -f "${ids[@]}" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

failures=()
pass() { log "PASS $1: $2"; }
fail() { log "FAIL $1: $2"; failures+=("$1: $2"); }

# Retries a command (quietly) once a second until it succeeds or SECONDS_MAX pass.
wait_for() {
    local max=$1
    shift
    local start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - start)) -lt "$max" ] || return 1
        sleep 1
    done
}

show_logs() { log "logs of $1:"; docker logs --tail 30 "$1" 2>&1 | sed 's/^/    /' >&2 || true; }

# --- postgres ---------------------------------------------------------------------------------
smoke_postgres() {
    local c="$RUN_ID-postgres" dir="$WORK/postgres" out ip
    mkdir -p "$dir/sockets" "$dir/conf" "$dir/pgsql"
    chmod 1777 "$dir/sockets"
    # What the deployment's postgresql.conf sets about sockets and locale.
    cat >"$dir/conf/postgresql.conf" <<'EOF'
listen_addresses = '*'
port = 5432
unix_socket_directories = '/sockets, /var/run/postgresql'
dynamic_shared_memory_type = posix
lc_messages = 'C.UTF-8'
lc_monetary = 'C.UTF-8'
lc_numeric = 'C.UTF-8'
lc_time = 'C.UTF-8'
EOF
    # The password as synprov gives it: a 0600 file of root's, named by POSTGRES_PASSWORD_FILE.
    printf 'smoke-secret\n' >"$dir/conf/password"
    chmod 600 "$dir/conf/password"
    docker run -d --name "$c" --label "$LABEL" --shm-size 256m \
        -e POSTGRES_USER=synapse -e POSTGRES_PASSWORD_FILE=/etc/postgresql/password -e POSTGRES_DB=synapse \
        -e POSTGRES_INITDB_ARGS='--encoding=UTF-8 --lc-collate=C --lc-ctype=C' \
        -v "$dir/sockets:/sockets" -v "$dir/conf:/etc/postgresql:ro" \
        -v "$dir/pgsql:/var/lib/postgresql/data" \
        "${TAGS[postgres]}" postgres -c config_file=/etc/postgresql/postgresql.conf >/dev/null

    if ! wait_for 90 docker exec "$c" pg_isready -h /sockets -U synapse; then
        show_logs "$c"
        fail postgres "pg_isready -h /sockets never answered"
        return
    fi
    pass postgres "pg_isready -h /sockets -U synapse"
    if docker inspect "$c" | grep -q smoke-secret; then
        fail postgres "docker inspect shows the password"
    else
        pass postgres "the password is read from POSTGRES_PASSWORD_FILE, not shown by docker inspect"
    fi

    out=$(docker exec "$c" psql -h /sockets -U synapse -d synapse -Atc \
        "SELECT current_setting('lc_collate') || ' ' || current_setting('lc_ctype') || ' ' || current_setting('server_encoding')" 2>&1 || true)
    if [ "$out" = "C C UTF8" ]; then
        pass postgres "database synapse: lc_collate C, lc_ctype C, encoding UTF8"
    else
        fail postgres "database synapse: expected 'C C UTF8', got '$out'"
    fi

    # Password login over TCP from another container (the pg_hba line the entrypoint adds,
    # scram-sha-256; as in the official image, loopback inside the container is trusted).
    ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
    out=$(docker run --rm --label "$LABEL" -e PGPASSWORD=smoke-secret --entrypoint psql "${TAGS[postgres]}" \
        -h "$ip" -U synapse -d synapse -Atc 'SELECT 1' 2>&1 || true)
    if [ "$out" = 1 ]; then pass postgres "password login over TCP"; else fail postgres "password login over TCP: $out"; fi
    out=$(docker run --rm --label "$LABEL" -e PGPASSWORD=wrong --entrypoint psql "${TAGS[postgres]}" \
        -h "$ip" -U synapse -d synapse -Atc 'SELECT 1' 2>&1 || true)
    if [[ "$out" == *"password authentication failed"* ]]; then
        pass postgres "a wrong password is refused"
    else
        fail postgres "a wrong password was not refused: $out"
    fi

    out=$(stat -c '%u:%g %a' "$dir/pgsql")
    if [ "$out" = "999:999 700" ]; then pass postgres "data directory owned by 999:999, mode 700"; else fail postgres "data directory: $out"; fi

    # A restart (compose's restart: always) keeps the data and skips initialisation.
    docker restart "$c" >/dev/null
    if wait_for 60 docker exec "$c" pg_isready -h /sockets -U synapse \
        && docker logs "$c" 2>&1 | grep -q 'initialisation skipped'; then
        pass postgres "restart reuses the initialised data directory"
    else
        show_logs "$c"
        fail postgres "restart"
    fi
}

# --- redis ------------------------------------------------------------------------------------
smoke_redis() {
    local c="$RUN_ID-redis" dir="$WORK/redis" out
    mkdir -p "$dir/sockets" "$dir/data"
    chmod 1777 "$dir/sockets"
    chown 1000:1000 "$dir/data"
    docker run -d --name "$c" --label "$LABEL" --user 1000:1000 \
        -v "$dir/sockets:/sockets" -v "$dir/data:/data" \
        "${TAGS[redis]}" redis-server --unixsocket /sockets/synapse_redis.sock --unixsocketperm 660 --port 0 >/dev/null
    if wait_for 30 docker exec "$c" redis-cli -s /sockets/synapse_redis.sock ping; then
        out=$(docker exec "$c" redis-cli -s /sockets/synapse_redis.sock ping 2>&1 || true)
        [ "$out" = PONG ] && pass redis "redis-cli -s /sockets/synapse_redis.sock ping: PONG" \
            || fail redis "ping answered '$out'"
    else
        show_logs "$c"
        fail redis "redis-cli ping over the socket never answered"
        return
    fi
    out=$(stat -c '%u:%g %a' "$dir/sockets/synapse_redis.sock" 2>&1 || true)
    [ "$out" = "1000:1000 660" ] && pass redis "socket owned by 1000:1000, mode 660" || fail redis "socket: $out"
    docker exec "$c" redis-cli -s /sockets/synapse_redis.sock save >/dev/null 2>&1 || true
    [ -f "$dir/data/dump.rdb" ] && pass redis "SAVE wrote /data/dump.rdb" || fail redis "no dump.rdb in /data after SAVE"
}

# --- synapse ----------------------------------------------------------------------------------
smoke_synapse() {
    local img=${TAGS[synapse]} c="$RUN_ID-synapse" dir="$WORK/synapse" out version
    version=$(docker run --rm --label "$LABEL" --entrypoint /opt/venv/bin/python "$img" \
        -c 'import synapse; print(synapse.__version__)' 2>&1 || true)
    if [[ "$version" == 1.16* ]]; then pass synapse "matrix-synapse $version"; else fail synapse "version: $version"; fi

    out=$(docker run --rm --label "$LABEL" "$img" run -m synapse.app.homeserver \
        --config-path=/data/homeserver.yaml --help 2>&1 || true)
    if [[ "$out" == *"usage:"* && "$out" == *"--config-path"* ]]; then
        pass synapse "start.py run -m synapse.app.homeserver --help"
    else
        fail synapse "--help through the entrypoint: $(printf '%s' "$out" | tail -n 3)"
    fi

    out=$(docker run --rm --label "$LABEL" "$img" 2>&1 || true)
    if [[ "$out" == *"Config file '/data/homeserver.yaml' does not exist"* ]]; then
        pass synapse "no args and no config: the official image's error"
    else
        fail synapse "no args and no config: $(printf '%s' "$out" | tail -n 2)"
    fi

    # generate, then run on a UNIX socket as the deployment does (healthcheck by curl).
    mkdir -p "$dir/data" "$dir/sockets"
    if ! docker run --rm --label "$LABEL" -v "$dir/data:/data" \
        -e SYNAPSE_SERVER_NAME=smoke.test -e SYNAPSE_REPORT_STATS=no "$img" generate >"$dir/generate.log" 2>&1; then
        fail synapse "generate: $(tail -n 3 "$dir/generate.log")"
        return
    fi
    if [ -f "$dir/data/homeserver.yaml" ] && [ -f "$dir/data/smoke.test.signing.key" ]; then
        pass synapse "generate wrote homeserver.yaml and smoke.test.signing.key"
    else
        fail synapse "generate: files missing (found: $(cd "$dir/data" && echo *))"
        return
    fi
    docker run --rm --label "$LABEL" -v "$dir/data:/data" --entrypoint /opt/venv/bin/python "$img" -c '
import yaml
path = "/data/homeserver.yaml"
config = yaml.safe_load(open(path))
config["listeners"] = [
    {"path": "/sockets/smoke_main.sock", "type": "http", "x_forwarded": True,
     "resources": [{"names": ["client", "federation"]}]},
    {"port": 8008, "bind_addresses": ["127.0.0.1"], "type": "http",
     "resources": [{"names": ["client"]}]},
]
yaml.safe_dump(config, open(path, "w"))
'
    docker run -d --name "$c" --label "$LABEL" -e SYNAPSE_SERVER_NAME=smoke.test -e UID=1000 -e GID=1000 \
        -v "$dir/data:/data" -v "$dir/sockets:/sockets" "$img" >/dev/null
    if wait_for 90 docker exec "$c" curl -fSs --unix-socket /sockets/smoke_main.sock http://localhost/health; then
        out=$(docker exec "$c" curl -fSs --unix-socket /sockets/smoke_main.sock http://localhost/health 2>&1 || true)
        [ "$out" = OK ] && pass synapse "curl --unix-socket /sockets/smoke_main.sock /health: OK" \
            || fail synapse "/health answered '$out'"
    else
        show_logs "$c"
        fail synapse "/health on the UNIX socket never answered"
        return
    fi
    out=$(docker exec "$c" curl -fSs http://127.0.0.1:8008/_matrix/client/versions 2>&1 || true)
    [[ "$out" == *'"versions"'* ]] && pass synapse "/_matrix/client/versions over TCP" || fail synapse "client versions: $out"
    out=$(docker exec "$c" sh -c 'tr "\0" " " </proc/1/cmdline; echo; grep -c jemalloc /proc/1/maps' 2>&1 || true)
    if [[ "$out" == *"-m synapse.app.homeserver --config-path /data/homeserver.yaml"* && "$(tail -n 1 <<<"$out")" -gt 0 ]]; then
        pass synapse "PID 1 is '$(head -n 1 <<<"$out" | sed 's/ *$//')', jemalloc preloaded"
    else
        fail synapse "process: $out"
    fi
    out=$(stat -c '%a' "$dir/sockets/smoke_main.sock" 2>&1 || true)
    [ "$out" = 666 ] && pass synapse "socket mode 666 (runs as root)" || fail synapse "socket mode: $out"
}

# --- nginx ------------------------------------------------------------------------------------
smoke_nginx() {
    local c="$RUN_ID-nginx" dir="$WORK/nginx" out
    mkdir -p "$dir/conf" "$dir/logs"
    # The shape of the rendered nginx.conf: everything it needs under /tmp or /var/log/nginx.
    cat >"$dir/conf/nginx.conf" <<'EOF'
worker_processes 1;
pid /tmp/nginx.pid;
error_log /var/log/nginx/error.log warn;
events { worker_connections 64; }
http {
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 8008 default_server reuseport;
        access_log /var/log/nginx/access.log;
        location = /health { default_type text/plain; return 200 "OK"; }
        location / { return 404; }
    }
}
EOF
    docker run -d --name "$c" --label "$LABEL" --tmpfs /tmp \
        -v "$dir/conf:/etc/nginx:ro" -v "$dir/logs:/var/log/nginx" "${TAGS[nginx]}" >/dev/null
    if wait_for 30 docker exec "$c" wget -q -O /dev/null http://127.0.0.1:8008/health; then
        out=$(docker exec "$c" wget -q -O - http://127.0.0.1:8008/health 2>&1 || true)
        [ "$out" = OK ] && pass nginx "own config over /etc/nginx (read-only), /health: OK" \
            || fail nginx "/health answered '$out'"
    else
        show_logs "$c"
        fail nginx "/health never answered"
        return
    fi
    [ -s "$dir/logs/access.log" ] && pass nginx "access log in /var/log/nginx" || fail nginx "no access log"
}

# --- lego -------------------------------------------------------------------------------------
# What the renewal script needs of the image: lego 4.9 and openssl, and the options it passes
# accepted (the run fails on the unreachable directory, not on an option).
smoke_lego() {
    local out
    out=$(docker run --rm --label "$LABEL" "${TAGS[lego]}" dpkg-query -W -f '${Version}' lego 2>&1 || true)
    [[ "$out" == 4.9.* ]] && pass lego "Debian's lego $out" || fail lego "lego package: '$out'"
    out=$(docker run --rm --label "$LABEL" "${TAGS[lego]}" openssl version 2>&1 || true)
    [[ "$out" == OpenSSL* ]] && pass lego "$out" || fail lego "openssl: '$out'"
    out=$(docker run --rm --label "$LABEL" "${TAGS[lego]}" sh -c 'mkdir -p /w && lego --path=/tmp/l --accept-tos \
        --email=admin@example.org --server=https://127.0.0.1:1/directory --key-type=ec384 \
        --domains=example.org --http --http.webroot=/w run' 2>&1 || true)
    [[ "$out" == *"connection refused"* ]] && pass lego "run's options accepted, the directory asked for" \
        || fail lego "lego run: $out"
    out=$(docker run --rm --label "$LABEL" "${TAGS[lego]}" lego renew --help 2>&1 || true)
    [[ "$out" == *--days* && "$out" == *--no-random-sleep* ]] && pass lego "renew has --days and --no-random-sleep" \
        || fail lego "lego renew --help: $out"
}

# --- host -------------------------------------------------------------------------------------
smoke_host() {
    local c="$RUN_ID-host" vol="$RUN_ID-host-docker" dir="$WORK/host" out ip
    local -a ssh_opts
    mkdir -p "$dir"
    docker volume create --label "$LABEL" "$vol" >/dev/null
    docker run -d --name "$c" --hostname smoke-host --label "$LABEL" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --cgroupns=host \
        -v "$vol:/var/lib/docker" "${TAGS[host]}" >/dev/null

    # systemctl answers once systemd's private socket exists; then wait for boot to finish.
    wait_for 60 docker exec "$c" test -S /run/systemd/private || true
    out=$(timeout 120 docker exec "$c" systemctl is-system-running --wait 2>&1 || true)
    case "$out" in
        running) pass host "systemctl is-system-running: running" ;;
        degraded)
            pass host "systemctl is-system-running: degraded"
            log "  failed units: $(docker exec "$c" systemctl --failed --plain --no-legend 2>&1 | tr '\n' ';')"
            ;;
        *)
            fail host "systemctl is-system-running: '$out'"
            docker exec "$c" systemctl --failed --plain --no-legend 2>&1 | sed 's/^/    /' >&2 || true
            return
            ;;
    esac
    out=$(docker exec "$c" systemctl is-active ssh 2>&1 || true)
    [ "$out" = active ] && pass host "ssh.service active" || { fail host "ssh.service: $out"; return; }

    out=$(docker exec "$c" sshd -T 2>&1 | grep -E '^(permitrootlogin|passwordauthentication|allowstreamlocalforwarding) ' | sort | tr '\n' ' ' || true)
    if [ "$out" = "allowstreamlocalforwarding yes passwordauthentication no permitrootlogin without-password " ]; then
        pass host "sshd: $out"
    else
        fail host "sshd settings: $out"
    fi
    out=$(docker exec "$c" stat -c '%n %U %a' /root/.ssh /home/deploy/.ssh 2>&1 | tr '\n' ' ' || true)
    [ "$out" = "/root/.ssh root 700 /home/deploy/.ssh deploy 700 " ] && pass host "$out" || fail host "ssh dirs: $out"
    if docker exec "$c" sh -c 'command -v docker dockerd' >/dev/null 2>&1; then
        fail host "docker is already installed"
    else
        pass host "no docker installed"
    fi

    # Key login as root and as deploy (with passwordless sudo), as the tests will do.
    ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519"
    docker cp "$dir/id_ed25519.pub" "$c:/root/.ssh/authorized_keys"
    docker cp "$dir/id_ed25519.pub" "$c:/home/deploy/.ssh/authorized_keys"
    docker exec "$c" sh -c 'chown root:root /root/.ssh/authorized_keys && chown deploy:deploy /home/deploy/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys /home/deploy/.ssh/authorized_keys'
    ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
    ssh_opts=(-i "$dir/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile="$dir/known_hosts"
              -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR)
    out=$(ssh "${ssh_opts[@]}" "root@$ip" 'id -un; hostname' 2>&1 | tr '\n' ' ' || true)
    [ "$out" = "root smoke-host " ] && pass host "ssh root@$ip with a key" || fail host "ssh root: $out"
    out=$(ssh "${ssh_opts[@]}" "deploy@$ip" 'sudo -n id -un' 2>&1 || true)
    [ "$out" = root ] && pass host "ssh deploy@$ip, sudo -n without a password" || fail host "ssh deploy + sudo: $out"
    out=$(ssh "${ssh_opts[@]}" -o PreferredAuthentications=password -o PubkeyAuthentication=no "root@$ip" true 2>&1 || true)
    [[ "$out" == *"Permission denied"* ]] && pass host "password authentication refused" || fail host "password auth: $out"
    out=$(ssh-keygen -lf "$dir/known_hosts" 2>/dev/null | awk '{ print $2 }' | head -n 1)
    local image_key
    image_key=$(docker run --rm --entrypoint sh "${TAGS[host]}" -c 'ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l')
    [ -n "$out" ] && [ "$image_key" = 0 ] && pass host "host keys made at boot (none in the image)" \
        || fail host "host keys: image has $image_key"

    if [ -n "${NESTED_DOCKER:-}" ]; then
        local start=$SECONDS
        out=$(ssh "${ssh_opts[@]}" "root@$ip" \
            'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq docker.io >/dev/null 2>&1; systemctl is-active docker; docker info --format "{{.Driver}}"' 2>&1 | tail -n 2 | tr '\n' ' ' || true)
        if [ "$out" = "active overlay2 " ]; then
            pass host "docker.io installed over SSH in $((SECONDS - start))s: active under systemd, overlay2"
        else
            fail host "nested docker: $out"
        fi
    fi
}

total_start=$SECONDS
for name in "${wanted[@]}"; do
    start=$SECONDS
    log "--- ${TAGS[$name]}"
    "smoke_$name"
    log "    (${name}: $((SECONDS - start))s)"
done

if [ ${#failures[@]} -gt 0 ]; then
    log "${#failures[@]} check(s) failed in $((SECONDS - total_start))s:"
    printf '    %s\n' "${failures[@]}" >&2
    exit 1
fi
log "all checks passed in $((SECONDS - total_start))s"
