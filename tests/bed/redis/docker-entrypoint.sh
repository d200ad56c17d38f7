#!/bin/sh
# The official redis image's entrypoint behaviour: a first argument that is a flag or a
# *.conf file means redis-server; as root, redis-server runs as the redis user (files in /data
# it does not own are handed over). Protected mode defaults to off, as in the official image
# (which patches the default at compile time), unless the arguments set it.
set -e

case "$1" in
    -*|*.conf) set -- redis-server "$@" ;;
esac

if [ "$1" = redis-server ]; then
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
    fi
    protected=
    for arg in "$@"; do
        case "$arg" in
            --protected-mode|*.conf) protected=1 ;;
        esac
    done
    if [ -z "$protected" ]; then
        set -- "$@" --protected-mode no
    fi
    umask 0077
fi

exec "$@"
