#!/usr/bin/env bash
# Builds the Python adapter into a WebAssembly component: bash build.sh OUT.wasm
# (OUT relative to the current directory). The toolchain is installed on first use.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: bash $0 OUT.wasm" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../toolchain/python.sh" "$here" ../../wit pubsub-adapter app "$1"
