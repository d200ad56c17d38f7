#!/usr/bin/env bash
# The project's test command: installs the tools the tests drive (nginx, Compose v2, sshd),
# starts a Docker engine and builds the end-to-end images locally (reused by tag when their
# recipe is unchanged), then runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh e2e        # only tests whose name matches "e2e" (nextest filter)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synprov-target}"
export PATH="/usr/sbin:/sbin:$PATH"

bash scripts/install-test-deps.sh
bash scripts/start-dockerd.sh
bash scripts/build-images.sh
cargo fmt --all -- --check
cargo build --all-targets --locked
cargo nextest run --locked --no-fail-fast "$@"
