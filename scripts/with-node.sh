#!/usr/bin/env bash
# Runs a command with the project's Node (>= 22) first on PATH and the mediasoup worker located,
# so `npm start` and `npm test` work from a shell whose own `node` is older.
source "$(dirname "$0")/lib.sh"
ensure_node
if [ -z "${MEDIASOUP_WORKER_BIN:-}" ] && [ -x "$LOCAL_DIR/mediasoup-worker" ]; then
  export MEDIASOUP_WORKER_BIN="$LOCAL_DIR/mediasoup-worker"
fi
exec "$@"
