#!/usr/bin/env bash
# Rebuilds the committed plugin components in plugins/dist/ from their sources: the example
# plugins and the hostile ones the sandbox tests load. The test suite uses the committed
# files, so it needs neither the wasm targets nor wasm-tools; this script does:
#
#   rustup target add wasm32-unknown-unknown wasm32-wasip2
#   cargo install wasm-tools --locked
#   scripts/build-plugins.sh
set -euo pipefail
cd "$(dirname "$0")/../plugins"
for tool in wasm-tools; do
    command -v "$tool" >/dev/null || { echo "build-plugins: $tool is missing: cargo install wasm-tools --locked" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-target}
mkdir -p dist

# A core module for wasm32-unknown-unknown imports nothing; `component new` wraps it.
component() { # PACKAGE OUTPUT [FEATURE]
    cargo build --quiet --release --target wasm32-unknown-unknown -p "$1" ${3:+--features "$3"}
    wasm-tools component new "$target/wasm32-unknown-unknown/release/${1//-/_}.wasm" -o "dist/$2.wasm"
    echo "plugins/dist/$2.wasm: $(stat -c %s "dist/$2.wasm") bytes"
}

component turn turn
component well-known well-known
component echo echo
for feature in infinite-loop memory-bomb trap path-traversal oversized-output service-collision abuse; do
    component hostile "hostile-$feature" "$feature"
done
# The std build for wasip2 is a component already, importing WASI (what synprov refuses).
cargo build --quiet --release --target wasm32-wasip2 -p hostile --features wasi-read
cp "$target/wasm32-wasip2/release/hostile.wasm" dist/hostile-wasi-read.wasm
echo "plugins/dist/hostile-wasi-read.wasm: $(stat -c %s dist/hostile-wasi-read.wasm) bytes"
