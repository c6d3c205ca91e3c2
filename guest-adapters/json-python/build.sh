#!/usr/bin/env bash
# Builds the Python adapter into a WebAssembly component: bash build.sh OUT.wasm
# (OUT relative to the current directory). componentize-py bundles CPython and
# app.py, generating the WIT bindings as it goes; nothing generated is kept here.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: bash $0 OUT.wasm" >&2; exit 2; }
out="$(realpath -m "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"

if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
mkdir -p "$(dirname "$out")"
cd "$here"
"$venv/bin/componentize-py" -d ../../wit -w pubsub-adapter componentize app -p . -o "$out"
