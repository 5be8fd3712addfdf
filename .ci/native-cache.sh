#!/usr/bin/env bash
# better-sqlite3 builds SQLite from source when its prebuilt binary cannot be downloaded (GitHub is unreachable
# here): about a minute of one core per Node ABI. `save DIR` packs the binary DIR's npm ci built into
# .cache/prebuilds, named as prebuild-install names a download; .ci/run points prebuild-install there
# (npm_config_better_sqlite3_local_prebuilds), so the next install of the same version and ABI unpacks it instead.
set -euo pipefail
cd "$(dirname "$0")/.."
prebuilds=$PWD/.cache/prebuilds
[ "${1:-}" = save ] || { echo "usage: $0 save DIR" >&2; exit 2; }
package=$2/node_modules/better-sqlite3
binary=$package/build/Release/better_sqlite3.node
[ -f "$binary" ] || exit 0
name=$(cd "$2" && node -p "const p = require('./node_modules/better-sqlite3/package.json'); \`\${p.name}-v\${p.version}-node-v\${process.versions.modules}-\${process.platform}-\${process.arch}.tar.gz\`")
[ -f "$prebuilds/$name" ] && exit 0
mkdir -p "$prebuilds"
tar -C "$package" -czf "$prebuilds/$name.part" build/Release/better_sqlite3.node
mv "$prebuilds/$name.part" "$prebuilds/$name"
echo "cached the better-sqlite3 build as .cache/prebuilds/$name"
