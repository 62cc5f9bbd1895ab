#!/usr/bin/env bash
# One command for the whole test suite: set up (packages, worker, Debian tools), type-check,
# lint, then every test. Prints a closing 'N passed, N failed' line.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
bash scripts/setup.sh --for-tests
export PATH="$LOCAL_DIR/node/bin:$PATH"
[ -x "$LOCAL_DIR/mediasoup-worker" ] && export MEDIASOUP_WORKER_BIN="${MEDIASOUP_WORKER_BIN:-$LOCAL_DIR/mediasoup-worker}"

log "type-checking"
npx tsc -p tsconfig.json --noEmit
log "linting"
npx eslint . --max-warnings=0
npx prettier --check . >/dev/null || { npx prettier --check . ; die "prettier: files above need 'npm run format'"; }

log "running the tests"
report="$LOCAL_DIR/vitest-report.json"
rm -f "$report"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
if [ -f "$report" ]; then
  node -e '
    const r = require(process.argv[1]);
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$report"
fi
exit $status
