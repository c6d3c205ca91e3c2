#!/usr/bin/env bash
# The JavaScript projects' build, shared by their build.sh: installs componentize-qjs
# (the project's package-lock.json) into its node_modules once, then compiles ENTRY
# with QuickJS into a component.
# Usage: bash js.sh PROJECT_DIR WIT_DIR WORLD ENTRY.js OUT.wasm
# (WIT_DIR and ENTRY relative to PROJECT_DIR, OUT to the current directory).
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: bash $0 PROJECT_DIR WIT_DIR WORLD ENTRY.js OUT.wasm" >&2; exit 2; }
project="$(cd "$1" && pwd)"
wit="$2" world="$3" entry="$4"
out="$(realpath -m "$5")"

cd "$project"
[ -d node_modules ] || npm ci --no-audit --no-fund
mkdir -p "$(dirname "$out")"
# --sync: the host does not use the component-model async ABI.
npx --no-install componentize-qjs --sync --wit "$wit" --world "$world" --js "$entry" -o "$out"
