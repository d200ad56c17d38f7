#!/usr/bin/env bash
# Installs what the test suite drives, when missing: Debian's nginx (for `nginx -t` and the
# routing tests), gixy (the Nginx analyser of the TLS tests), Compose v2 (for `docker compose config`), PyYAML (Synapse's YAML parser) and
# tzdata (the IANA zones), openssl (the ACME renewal test), Pebble (the ACME CA of the e2e test). Idempotent; needs root.
set -euo pipefail

log() { printf '[install-test-deps] %s\n' "$*"; }

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    log "installing nginx"
    apt_install nginx
fi

# openssl: the ACME renewal test runs the rendered client script, which reads certificates
# with it (as it does in the lego image).
if ! command -v openssl >/dev/null 2>&1; then
    log "installing openssl"
    apt_install openssl
fi

if [ ! -x /usr/sbin/sshd ]; then
    log "installing openssh-server (the SSH tests start their own sshd on loopback)"
    apt_install openssh-server openssh-client
fi

# Pebble, Let's Encrypt's ACME test server, and its DNS server pebble-challtestsrv: the
# end-to-end test of certificates issued and renewed through a deployment's Nginx.
if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then
    log "installing pebble"
    apt_install pebble
fi

# strace: the render test counts the renames and syncs of `render --out`.
if ! command -v strace >/dev/null 2>&1; then
    log "installing strace"
    apt_install strace
fi

# PyYAML: the hostile-inventories test reads every rendered YAML file as Synapse does.
if ! python3 -c 'import yaml' 2>/dev/null; then
    log "installing PyYAML (python3-yaml)"
    apt_install python3-yaml
    # A python3 that is not Debian's (pyenv, a venv) does not see the Debian package.
    if ! python3 -c 'import yaml' 2>/dev/null; then
        python3 -m pip install -q pyyaml
    fi
fi

# gixy (PyPI): the TLS tests fail on any finding of high severity in the rendered Nginx config.
if ! command -v gixy >/dev/null 2>&1; then
    log "installing gixy (Nginx configuration analyser)"
    if python3 -m pip --version >/dev/null 2>&1; then
        python3 -m pip install -q gixy
    else
        apt_install python3-pip
        python3 -m pip install -q --break-system-packages gixy
    fi
fi

if [ ! -f /usr/share/zoneinfo/Etc/UTC ]; then
    log "installing tzdata"
    apt_install tzdata
fi

# Compose v2 as a Docker CLI plugin: the tests call `docker compose`.
bash "$(dirname "$0")/install-compose.sh"
log "nginx: $(nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1)"
log "compose: $(docker compose version)"
log "PyYAML: $(python3 -c 'import yaml; print(yaml.__version__)')"
