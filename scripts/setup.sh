#!/usr/bin/env bash
# Sets up everything the project needs on this machine, idempotently and quickly when it is
# already there: Node 24 (project-local when the system's is older), npm packages, the mediasoup
# worker (prebuilt, or built offline and cached outside the clone), the build, and with
# --for-tests the Debian packages the test suite runs against.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

for_tests=false
[ "${1:-}" = "--for-tests" ] && for_tests=true

ensure_node
log "node $(node --version) at $(command -v node)"

# npm packages: `npm ci` only when the lockfile changed since the last install.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="$LOCAL_DIR/npm-ci.sha256"
if [ -d node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
  log "npm packages up to date"
else
  log "installing npm packages (npm ci)"
  # mediasoup's own postinstall downloads or builds its worker; the next step owns that.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  mkdir -p "$LOCAL_DIR" && echo "$lock_sum" >"$stamp"
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]} (or install them yourself)"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${MEDIA_ENABLED:-true}" != "false" ]; then
  bash "$ROOT/scripts/setup-mediasoup-worker.sh"
fi

if $for_tests; then
  apt_install redis-server chromium nginx prometheus
fi

log "building (tsc and the browser page)"
npm run --silent build
log "set-up done"
