#!/usr/bin/env bash
# The project's test command: installs the tools the tests drive, then runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh nginx      # only tests whose name matches "nginx" (nextest filter)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synprov-target}"
export PATH="/usr/sbin:/sbin:$PATH"

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo build --all-targets --locked
cargo nextest run --locked --no-fail-fast "$@"
