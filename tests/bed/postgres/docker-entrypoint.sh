#!/usr/bin/env bash
# The official postgres image's entrypoint behaviour, on Debian's PostgreSQL 15:
#   - `postgres ARGS...` (or just `-flags...`): as root, fix the ownership of PGDATA and
#     /var/run/postgresql and re-run as the postgres user;
#   - on first start (no PGDATA/PG_VERSION): initdb with POSTGRES_USER, POSTGRES_PASSWORD and
#     POSTGRES_INITDB_ARGS, allow password logins from anywhere (`host all all all
#     scram-sha-256`, or POSTGRES_HOST_AUTH_METHOD), start a temporary server on the default
#     socket directory only (so nothing answers on the configured sockets, e.g. /sockets,
#     before the database exists), create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sh
#     and *.sql, stop it;
#   - then exec the real server with the given arguments.
# As the official image, POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB and
# POSTGRES_INITDB_ARGS may each be given as VAR_FILE, the path of a file holding the value
# (trailing newlines dropped): read as root, before the switch to postgres, so a 0600 file
# of root's serves; both VAR and VAR_FILE set is an error.
# Anything else is executed as is.
set -Eeo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
SOCKET_DIR=/var/run/postgresql

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The official image's file_env: VAR from the file VAR_FILE names, exported (so that the
# re-run as postgres has it) and VAR_FILE unset.
file_env() {
    local var="$1"
    local file_var="${var}_FILE"
    local default="${2:-}"
    if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
        die "both $var and $file_var are set (but are exclusive)"
    fi
    local value="$default"
    if [ "${!var:-}" ]; then
        value="${!var}"
    elif [ "${!file_var:-}" ]; then
        value="$(< "${!file_var}")"
    fi
    export "$var"="$value"
    unset "$file_var"
}

init_database() {
    local user="${POSTGRES_USER:-postgres}"
    local db="${POSTGRES_DB:-$user}"
    local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        die "the database is uninitialized and POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust)"
    fi

    log "initialising $PGDATA (user $user, args: ${POSTGRES_INITDB_ARGS:-none})"
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        # eval: POSTGRES_INITDB_ARGS may hold quoted arguments, as in the official image.
        eval '"$PG_BIN/initdb" --username="$user" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"${POSTGRES_INITDB_ARGS:-}"
    else
        eval '"$PG_BIN/initdb" --username="$user" '"${POSTGRES_INITDB_ARGS:-}"
    fi

    {
        printf '\n'
        printf 'host all all all %s\n' "$auth"
    } >>"$PGDATA/pg_hba.conf"

    # The temporary server: the given arguments (so the given config applies), no TCP, and
    # only the default socket directory.
    local -a temp_args=("$@" -c listen_addresses= -c "unix_socket_directories=$SOCKET_DIR" -p 5432)
    log "starting a temporary server"
    PGUSER="$user" "$PG_BIN/pg_ctl" -D "$PGDATA" -o "$(printf '%q ' "${temp_args[@]}")" -w -t 60 start >&2

    export PGPASSWORD="${PGPASSWORD:-${POSTGRES_PASSWORD:-}}"
    local -a psql=("$PG_BIN/psql" -v ON_ERROR_STOP=1 --username "$user" --no-password --no-psqlrc
                   --host "$SOCKET_DIR" --port 5432)
    if [ "$db" != postgres ]; then
        local exists
        exists=$("${psql[@]}" --dbname postgres --set db="$db" --tuples-only --no-align \
            <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
        if [ -z "$exists" ]; then
            log "creating database $db"
            "${psql[@]}" --dbname postgres --set db="$db" <<<'CREATE DATABASE :"db";' >&2
        fi
    fi

    local f
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh) log "running $f"; PGHOST="$SOCKET_DIR" PGUSER="$user" PGDATABASE="$db" bash "$f" ;;
            *.sql) log "running $f"; "${psql[@]}" --dbname "$db" -f "$f" >&2 ;;
            *) log "ignoring $f" ;;
        esac
    done

    "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >&2
    unset PGPASSWORD
    log "initialisation done"
}

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "${1:-}" = postgres ]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA" "$SOCKET_DIR"
        chmod 700 "$PGDATA" || :
        find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
        chown postgres:postgres "$SOCKET_DIR"
        chmod 3777 "$SOCKET_DIR" || :
        exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        init_database "$@"
    else
        log "$PGDATA holds a database: initialisation skipped"
    fi
    exec "$PG_BIN/postgres" "$@"
fi

exec "$@"
