#!/usr/bin/env bash
# Provides a working mediasoup-worker binary for the installed mediasoup, cached outside the clone,
# and links it as .local/mediasoup-worker (scripts/with-node.sh exports MEDIASOUP_WORKER_BIN from it).
#
# Run from the repository root after `npm ci --ignore-scripts`. In order, it uses:
#   1. $MEDIASOUP_WORKER_BIN, when set and executable;
#   2. a cached binary: $CACHE_DIR/mediasoup-worker/<mediasoup version>-<flavour>/mediasoup-worker,
#      flavour `prebuilt` (mediasoup's official binary) or `offline-<SHIM_VERSION>`;
#   3. mediasoup's own prebuilt download from its GitHub release (its postinstall code, with its
#      fallback to a network-needing local build disabled), cached as `prebuilt`;
#   4. an offline build against Debian's libraries (docs/mediasoup-offline-build.md), cached as
#      `offline-<SHIM_VERSION>`.
# then checks that the binary starts a worker and a router before linking it.
#
# Options (or environment):
#   --offline   skip step 3   (TRADING_ROOM_MEDIASOUP_OFFLINE=1 or MEDIASOUP_SKIP_WORKER_PREBUILT_DOWNLOAD=1)
#   --rebuild   ignore steps 1-2, download or build again, replace the cache entry
#               (TRADING_ROOM_MEDIASOUP_REBUILD=1)
#   --keep-build  keep the temporary build folder (TRADING_ROOM_MEDIASOUP_KEEP_BUILD=1)
# TRADING_ROOM_MEDIASOUP_PREBUILT_TIMEOUT: seconds allowed for the prebuilt download (default 120).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bump whenever anything under scripts/mediasoup-offline/ or the offline build steps below change:
# it names the cache entry, so a bump makes every machine rebuild once.
SHIM_VERSION=1

OFFLINE_DIR="$ROOT/scripts/mediasoup-offline"
MEDIASOUP_DIR="$ROOT/node_modules/mediasoup"
WORKER_CACHE_ROOT="$CACHE_DIR/mediasoup-worker"
LINK="$LOCAL_DIR/mediasoup-worker"
DEB_PACKAGES=(g++ pkg-config ninja-build python3 patch libssl-dev libuv1-dev libabsl-dev libsrtp2-dev
  libflatbuffers-dev flatbuffers-compiler)
MESON_MIN=1.1.0
# mediasoup's worker folders that need no shim for the default (non-test, non-Windows) build.
UNSHIMMED_WRAPS_OK=(catch2 wingetopt)

OFFLINE="${TRADING_ROOM_MEDIASOUP_OFFLINE:-${MEDIASOUP_SKIP_WORKER_PREBUILT_DOWNLOAD:-0}}"
REBUILD="${TRADING_ROOM_MEDIASOUP_REBUILD:-0}"
KEEP_BUILD="${TRADING_ROOM_MEDIASOUP_KEEP_BUILD:-0}"
PREBUILT_TIMEOUT="${TRADING_ROOM_MEDIASOUP_PREBUILT_TIMEOUT:-120}"
for arg in "$@"; do
  case "$arg" in
    --offline) OFFLINE=1 ;;
    --rebuild) REBUILD=1 ;;
    --keep-build) KEEP_BUILD=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done
case "$OFFLINE" in ""|0|false|no) OFFLINE=0 ;; *) OFFLINE=1 ;; esac

CLEANUP=()
FAILED_BUILD_DIR=""
cleanup() {
  local rc=$? p
  for p in "${CLEANUP[@]}"; do rm -rf -- "$p"; done
  if [ "$rc" -ne 0 ] && [ -n "$FAILED_BUILD_DIR" ]; then
    log "failed; the build folder is kept for inspection: $FAILED_BUILD_DIR"
  fi
}
trap cleanup EXIT

step() { log "$*"; }
elapsed() { local s=$(( $(date +%s) - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# mediasoup's own validity check (npm-scripts.mjs): run without MEDIASOUP_VERSION, expect exit 41.
worker_runs() {
  [ -f "$1" ] && [ -x "$1" ] || return 1
  local rc=0
  env -i "$1" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 41 ]
}

# Copies a binary into the cache entry for a flavour; write-then-rename, so readers never see a
# partial file.
install_into_cache() {
  local src="$1" flavour="$2" info="$3"
  local dir="$WORKER_CACHE_ROOT/$MS_VERSION-$flavour"
  mkdir -p "$dir"
  local tmp="$dir/.mediasoup-worker.tmp.$$"
  CLEANUP+=("$tmp")
  cp "$src" "$tmp" && chmod 0755 "$tmp" && mv -f "$tmp" "$dir/mediasoup-worker" \
    || die "could not write $dir/mediasoup-worker"
  printf '%s\n' "$info" >"$dir/build-info.txt.tmp.$$" && mv -f "$dir/build-info.txt.tmp.$$" "$dir/build-info.txt" \
    || die "could not write $dir/build-info.txt"
  CACHED_BIN="$dir/mediasoup-worker"
}

# --- 3. mediasoup's official prebuilt -----------------------------------------------------------
# Runs mediasoup's own npm-scripts.mjs `postinstall` (the code `npm ci` would run: same URL, tar
# extraction and host check) in a scratch copy of the package's two files, so node_modules is never
# written. Its fallback on failure is a local build that installs pip packages and downloads
# sources; PYTHON=false makes that fallback fail at once instead.
try_prebuilt() {
  local tmp; tmp="$(mktemp -d "${TMPDIR:-/tmp}/mediasoup-prebuilt.XXXXXX")"
  CLEANUP+=("$tmp")
  cp "$MEDIASOUP_DIR/npm-scripts.mjs" "$MEDIASOUP_DIR/package.json" "$tmp/"
  ln -s "$ROOT/node_modules" "$tmp/node_modules"   # node-fetch and tar, mediasoup's dependencies
  step "trying mediasoup's prebuilt worker download (timeout ${PREBUILT_TIMEOUT}s)"
  local rc=0
  (cd "$tmp" && env -u MEDIASOUP_WORKER_BIN -u MEDIASOUP_LOCAL_DEV -u MEDIASOUP_SKIP_WORKER_PREBUILT_DOWNLOAD \
      -u npm_package_resolved MEDIASOUP_FORCE_WORKER_PREBUILT_DOWNLOAD=1 PYTHON=false \
      timeout "$PREBUILT_TIMEOUT" node npm-scripts.mjs postinstall) >"$tmp/download.log" 2>&1 || rc=$?
  local bin="$tmp/worker/out/Release/mediasoup-worker"
  if [ "$rc" -eq 0 ] && worker_runs "$bin"; then
    sed 's/^/    /' "$tmp/download.log" >&2
    install_into_cache "$bin" prebuilt "mediasoup $MS_VERSION official prebuilt worker, downloaded $(date -u +%FT%TZ) by scripts/setup-mediasoup-worker.sh"
    step "prebuilt worker downloaded and cached: $CACHED_BIN"
    return 0
  fi
  grep -E 'downloadPrebuiltWorker|ERROR' "$tmp/download.log" | head -n 5 | sed 's/^/    /' >&2 || true
  [ "$rc" -ne 124 ] || log "    (timed out)"
  step "no prebuilt worker available here (exit $rc); building offline instead"
  return 1
}

# --- 4. offline build ---------------------------------------------------------------------------
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root for: $* (run as root, or install it yourself)"; fi
}

deb_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

ensure_deb_packages() {
  command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || die "the offline build expects Debian/Ubuntu (apt); install the equivalents of: ${DEB_PACKAGES[*]}"
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do deb_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -eq 0 ]; then
    step "Debian packages present: ${DEB_PACKAGES[*]}"
    return
  fi
  step "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >&2
}

meson_ok() {
  command -v meson >/dev/null || return 1
  local v; v="$(meson --version 2>/dev/null)" || return 1
  dpkg --compare-versions "$v" ge "$MESON_MIN"
}

# mediasoup needs meson >= 1.1; bookworm has 1.0.1, bookworm-backports has 1.7 (architecture-
# independent, needs nothing beyond python3 and ninja). The backports source is added for this one
# install and removed again.
ensure_meson() {
  if meson_ok; then
    step "meson $(meson --version) present"
    return
  fi
  local codename mirror list
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [ -n "$codename" ] || die "meson >= $MESON_MIN needed and the Debian release is unknown"
  mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  list="/etc/apt/sources.list.d/trading-room-$codename-backports.sources"
  step "installing meson from $codename-backports ($mirror), via temporary $list"
  CLEANUP+=("$list")
  printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$codename" | as_root tee "$list" >/dev/null
  # Refresh that source only; keep the other package lists as they are.
  as_root apt-get update -qq -o Dir::Etc::SourceList="$list" -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends \
    -t "$codename-backports" meson >&2
  as_root rm -f "$list"
  meson_ok || die "meson >= $MESON_MIN still missing after installing it from $codename-backports"
  step "meson $(meson --version) installed; $list removed"
}

build_offline() {
  local t0; t0="$(date +%s)"
  step "offline build of mediasoup-worker $MS_VERSION (shim version $SHIM_VERSION)"
  ensure_deb_packages
  ensure_meson

  local build; build="$(mktemp -d "${TMPDIR:-/tmp}/mediasoup-worker-build.XXXXXX")"
  local w="$build/worker"
  FAILED_BUILD_DIR="$build"
  step "copying node_modules/mediasoup/worker to $w"
  cp -a "$MEDIASOUP_DIR/worker" "$w"
  rm -rf "$w/out" "$w/pip_invoke" "$w/prebuild"

  # Subprojects: each shim folder is named after the wrap it replaces and is installed under the
  # wrap's `directory =` name, where meson looks before it would download anything.
  local shim name wrap dir shimmed=" "
  for shim in "$OFFLINE_DIR"/subprojects/*/; do
    name="$(basename "$shim")"
    wrap="$w/subprojects/$name.wrap"
    [ -f "$wrap" ] || die "mediasoup $MS_VERSION has no subprojects/$name.wrap; update scripts/mediasoup-offline"
    dir="$(sed -n 's/^directory[[:space:]]*=[[:space:]]*//p' "$wrap" | tr -d '[:space:]')"
    [ -n "$dir" ] || die "no 'directory =' line in $wrap"
    rm -rf "${w:?}/subprojects/$dir"
    cp -a "$shim" "$w/subprojects/$dir"
    shimmed+="$name "
    step "  subproject $name -> subprojects/$dir (system library shim)"
  done
  for wrap in "$w"/subprojects/*.wrap; do
    name="$(basename "$wrap" .wrap)"
    case "$shimmed ${UNSHIMMED_WRAPS_OK[*]} " in *" $name "*) ;;
      *) log "warning: subprojects/$name.wrap has no offline shim; meson setup will fail if the build needs it" ;;
    esac
  done

  local patch
  for patch in "$OFFLINE_DIR"/patches/*.patch; do
    [ -f "$patch" ] || continue
    step "  patch $(basename "$patch")"
    if ! (cd "$w" && patch -p1 --forward --batch --silent --dry-run <"$patch" >/dev/null); then
      if (cd "$w" && patch -p1 --reverse --batch --silent --dry-run <"$patch" >/dev/null); then
        log "    already present in mediasoup $MS_VERSION, skipped"
        continue
      fi
      die "patch $(basename "$patch") does not apply to mediasoup $MS_VERSION's worker sources; update it"
    fi
    (cd "$w" && patch -p1 --forward --batch --silent <"$patch")
  done
  # The one-line fix must really be in place.
  grep -q '(operationType & BIO_CB_RETURN) ? static_cast<long>(ret) : 1' "$w/src/RTC/DtlsTransport.cpp" \
    || die "DtlsTransport.cpp onSslBioOut fix not found after patching"

  # The steps of mediasoup's worker/tasks.py, with downloads disabled.
  local jobs; jobs="$(nproc 2>/dev/null || echo 2)"
  cd "$w"
  step "meson setup"
  meson setup --prefix "$w/out/Release" --bindir "" --libdir "" --buildtype release -Db_ndebug=true \
    --wrap-mode=nodownload out/Release/build >&2
  step "meson compile flatbuffers-generator"
  meson compile -C out/Release/build flatbuffers-generator >&2
  step "meson compile mediasoup-worker (-j $jobs; several minutes)"
  local tc; tc="$(date +%s)"
  meson compile -C out/Release/build -j "$jobs" mediasoup-worker >&2
  step "compiled in $(elapsed "$tc")"
  step "meson install"
  meson install -C out/Release/build --no-rebuild --tags mediasoup-worker >&2
  cd "$ROOT"

  local bin="$w/out/Release/mediasoup-worker"
  worker_runs "$bin" || die "the built worker does not run: $bin"
  install_into_cache "$bin" "offline-$SHIM_VERSION" "mediasoup $MS_VERSION worker, offline build (shim version $SHIM_VERSION)
built $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME") by scripts/setup-mediasoup-worker.sh
against: $(dpkg-query -W -f='${Package} ${Version}, ' libssl3 libuv1 libsrtp2-1 libabsl20220623 libflatbuffers-dev 2>/dev/null)meson $(meson --version)"
  FAILED_BUILD_DIR=""
  if [ "$KEEP_BUILD" = 1 ]; then log "build folder kept: $build"; else rm -rf "$build"; fi
  step "offline build done in $(elapsed "$t0"): $CACHED_BIN"
}

# --- 5. check and link ----------------------------------------------------------------------------
verify_worker() {
  step "checking $1: worker + router (opus, VP8)"
  (cd "$ROOT" && MEDIASOUP_WORKER_BIN="$1" timeout 60 node -e '
    const mediasoup = require("mediasoup");
    (async () => {
      const worker = await mediasoup.createWorker({ logLevel: "warn" });
      const router = await worker.createRouter({ mediaCodecs: [
        { kind: "audio", mimeType: "audio/opus", clockRate: 48000, channels: 2 },
        { kind: "video", mimeType: "video/VP8", clockRate: 90000 },
      ] });
      const codecs = router.rtpCapabilities.codecs.map((c) => c.mimeType).join(", ");
      console.error(`    mediasoup ${mediasoup.version}: worker pid ${worker.pid}, router ${router.id} [${codecs}]`);
      worker.close();
    })().catch((error) => { console.error(error); process.exit(1); });
  ') || die "the worker at $1 failed the check"
}

# --- main ---------------------------------------------------------------------------------------
T0="$(date +%s)"
cd "$ROOT"
[ -f "$MEDIASOUP_DIR/package.json" ] || die "node_modules/mediasoup missing: run 'npm ci --ignore-scripts' first"
ensure_node
MS_VERSION="$(node -p 'require(process.argv[1]).version' "$MEDIASOUP_DIR/package.json")"
step "mediasoup $MS_VERSION; cache $WORKER_CACHE_ROOT"

mkdir -p "$WORKER_CACHE_ROOT" "$LOCAL_DIR"
# One setup at a time per cache (a second run waits for the first, then finds its result).
exec 9>"$WORKER_CACHE_ROOT/.lock"
if command -v flock >/dev/null && ! flock -n 9; then
  step "another setup is running; waiting for it"
  flock 9
fi

BIN=""
if [ -n "${MEDIASOUP_WORKER_BIN:-}" ] && [ "$REBUILD" != 1 ]; then
  if [ -x "$MEDIASOUP_WORKER_BIN" ] && [ -f "$MEDIASOUP_WORKER_BIN" ]; then
    BIN="$(readlink -f "$MEDIASOUP_WORKER_BIN")"
    step "using MEDIASOUP_WORKER_BIN=$MEDIASOUP_WORKER_BIN"
  else
    log "warning: MEDIASOUP_WORKER_BIN=$MEDIASOUP_WORKER_BIN is not an executable file; ignoring it"
  fi
fi
if [ -z "$BIN" ] && [ "$REBUILD" != 1 ]; then
  for flavour in prebuilt "offline-$SHIM_VERSION"; do
    candidate="$WORKER_CACHE_ROOT/$MS_VERSION-$flavour/mediasoup-worker"
    if worker_runs "$candidate"; then
      BIN="$candidate"
      step "using cached worker: $BIN"
      break
    elif [ -e "$candidate" ]; then
      log "warning: cached $candidate does not run; ignoring it"
    fi
  done
fi
if [ -z "$BIN" ]; then
  CACHED_BIN=""
  if [ "$OFFLINE" = 1 ]; then
    step "prebuilt download skipped (offline mode)"
  elif command -v node >/dev/null && try_prebuilt; then
    BIN="$CACHED_BIN"
  fi
  if [ -z "$BIN" ]; then
    build_offline
    BIN="$CACHED_BIN"
  fi
fi

verify_worker "$BIN"
ln -sfn "$BIN" "$LINK"
step "linked $LINK -> $BIN ($(elapsed "$T0") total)"
