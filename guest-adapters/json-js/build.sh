#!/usr/bin/env bash
# Builds the adapter component: bash build.sh OUT.wasm (OUT relative to the caller's directory).
set -euo pipefail
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
[ -d node_modules ] || npm ci --no-audit --no-fund
mkdir -p "$(dirname "$out")"
# --sync: the host does not use the component-model async ABI.
npx --no-install componentize-qjs --sync --wit ../../wit --world pubsub-adapter --js adapter.js -o "$out"
