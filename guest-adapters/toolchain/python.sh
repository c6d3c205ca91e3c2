#!/usr/bin/env bash
# The Python projects' build, shared by their build.sh: installs componentize-py (the
# project's requirements.txt; CPython comes inside its wheel) into the project's .venv
# once, then bundles CPython and MODULE into a component, generating the WIT bindings
# as it goes; nothing generated is kept.
# Usage: bash python.sh PROJECT_DIR WIT_DIR WORLD MODULE OUT.wasm
# (WIT_DIR relative to PROJECT_DIR, OUT to the current directory).
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: bash $0 PROJECT_DIR WIT_DIR WORLD MODULE OUT.wasm" >&2; exit 2; }
project="$(cd "$1" && pwd)"
wit="$2" world="$3" module="$4"
out="$(realpath -m "$5")"
venv="$project/.venv"

if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$project/requirements.txt"
fi
mkdir -p "$(dirname "$out")"
cd "$project"
"$venv/bin/componentize-py" -d "$wit" -w "$world" componentize "$module" -p . -o "$out"
