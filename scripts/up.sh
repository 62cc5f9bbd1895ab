#!/usr/bin/env bash
# One command for a complete single-node trading room: set up, build, start. Everything is in
# memory (no Redis); a development JWT secret is generated and ready tokens are printed.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
bash scripts/setup.sh
# The OpenTelemetry preload first: it does nothing unless OTEL_* asks for tracing.
exec scripts/with-node.sh node --import ./dist/signaling/src/instrumentation.js dist/signaling/src/main.js
