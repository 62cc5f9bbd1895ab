#!/usr/bin/env bash
# npm run load:artillery -- [artillery run options, e.g. --target wss://rooms.example.com]
# Installs Artillery on first use into a cache outside the clone (it is too heavy for the
# project's dependencies) and runs load-tests/artillery/trading-room.yml with it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=2.0.34
cache="${TRADING_ROOM_ARTILLERY_DIR:-$HOME/.cache/trading-room/artillery}"
bin="$cache/node_modules/.bin/artillery"
if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$version\"" "$cache/node_modules/artillery/package.json" 2>/dev/null; then
  echo "installing artillery@$version into $cache (once)" >&2
  mkdir -p "$cache"
  npm install --ignore-scripts --no-audit --no-fund --prefix "$cache" "artillery@$version" >&2
fi
: "${TRADING_ROOM_JWT_SECRET:?set TRADING_ROOM_JWT_SECRET to the signing secret of the deployment}"
exec "$bin" run "$here/trading-room.yml" "$@"
