#!/usr/bin/env bash
# A local cluster for trying cross-node behaviour: Debian's redis-server on a free port and three
# nodes (run from source) on free ports sharing it, with one development JWT secret and admin
# token. No Docker. Prints each node's URLs, tokens for a presenter, traders and a moderator, and
# a demo URL per node; Ctrl-C drains the nodes, then stops Redis.
#
#   scripts/cluster.sh [--nodes N] [--for-seconds S] [--logs DIR]
#
#   --nodes N        how many nodes (default 3)
#   --for-seconds S  stop everything after S seconds (scripted runs)
#   --logs DIR       keep the nodes' and Redis's logs in DIR (default: a temporary folder,
#                    removed at the end)
# The nodes inherit the environment (MEDIA_ENABLED, MEDIASOUP_NUM_WORKERS, LOG_LEVEL, …); NODE_ID,
# PORT, REDIS_URL, the secret and the admin token are set here.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

count=3
for_seconds=""
logs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) count="${2:-}"; shift 2 ;;
    --for-seconds) for_seconds="${2:-}"; shift 2 ;;
    --logs) logs="${2:-}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
[[ "$count" =~ ^[1-9][0-9]?$ ]] || die "--nodes wants a number from 1 to 99"
[ -z "$for_seconds" ] || [[ "$for_seconds" =~ ^[0-9]+$ ]] || die "--for-seconds wants a whole number"

# What the nodes need: Node 24 and the packages, Redis, the mediasoup worker, the demo page.
ensure_node
[ -d node_modules ] || bash scripts/setup.sh
if ! command -v redis-server >/dev/null; then
  [ "$(id -u)" = 0 ] || die "redis-server is missing: install the Debian package redis-server (as root)"
  log "installing Debian's redis-server"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if [ "${MEDIA_ENABLED:-true}" != "false" ]; then
  [ -x "$LOCAL_DIR/mediasoup-worker" ] || [ -n "${MEDIASOUP_WORKER_BIN:-}" ] || bash scripts/setup-mediasoup-worker.sh
  [ -n "${MEDIASOUP_WORKER_BIN:-}" ] || export MEDIASOUP_WORKER_BIN="$LOCAL_DIR/mediasoup-worker"
fi
[ -f dist/web/index.html ] || node --import tsx scripts/build-web.ts

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/trading-room-cluster-XXXXXX")"
log_dir="${logs:-$run_dir}"
mkdir -p "$log_dir"
redis_pid=""
node_pids=()

# Drains every node (SIGTERM), waits for them, then stops Redis; kill -9 for what outlives it.
cleanup() {
  trap - EXIT INT TERM
  log "stopping: draining ${#node_pids[@]} node(s), then Redis"
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + ${DRAIN_TIMEOUT_MS:-5000} / 1000 + 10))
  for pid in "${node_pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$redis_pid" ]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    while kill -0 "$redis_pid" 2>/dev/null && [ $SECONDS -lt $((deadline + 5)) ]; do sleep 0.1; done
    kill -KILL "$redis_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$run_dir"
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free TCP ports, all held open at once so they differ.
mapfile -t ports < <(node -e '
  const net = require("node:net");
  const servers = Array.from({ length: Number(process.argv[1]) }, () => net.createServer().listen(0, "127.0.0.1"));
  Promise.all(servers.map((s) => new Promise((r) => s.once("listening", r)))).then(() => {
    for (const s of servers) console.log(s.address().port);
    for (const s of servers) s.close();
  });' $((count + 1)))
redis_port="${ports[0]}"

# Answers 0 when GET $2 on port $1 answers 200 (bash's /dev/tcp: no curl needed).
http_ok() {
  local status
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
  read -r _ status _ <&3 || true
  exec 3<&- 3>&-
  [ "$status" = 200 ]
}

# Children get their own session: Ctrl-C reaches this script only, which stops them in order.
setsid redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$run_dir" --logfile "$log_dir/redis.log" &
redis_pid=$!
until redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; do
  kill -0 "$redis_pid" 2>/dev/null || die "redis-server did not start (see $log_dir/redis.log)"
  sleep 0.1
done

secret="${SIGNALING_JWT_SECRET:-$(node -p 'require("node:crypto").randomBytes(32).toString("base64url")')}"
admin_token="${SIGNALING_ADMIN_TOKEN:-$(node -p 'require("node:crypto").randomBytes(24).toString("base64url")')}"
for i in $(seq 1 "$count"); do
  NODE_ENV="${NODE_ENV:-development}" HOST="${HOST:-127.0.0.1}" PORT="${ports[$i]}" NODE_ID="node-$i" \
    REDIS_URL="redis://127.0.0.1:$redis_port" SIGNALING_JWT_SECRET="$secret" \
    SIGNALING_ADMIN_TOKEN="$admin_token" DRAIN_TIMEOUT_MS="${DRAIN_TIMEOUT_MS:-5000}" \
    setsid node --import tsx --import ./signaling/src/instrumentation.ts signaling/src/main.ts >"$log_dir/node-$i.log" 2>&1 &
  node_pids+=($!)
done
for i in $(seq 1 "$count"); do
  until http_ok "${ports[$i]}" /health/ready; do
    kill -0 "${node_pids[$((i - 1))]}" 2>/dev/null || die "node-$i did not start: $(tail -5 "$log_dir/node-$i.log")"
    sleep 0.2
  done
done

# Tokens for room "demo": a presenter, a moderator, and one trader per node.
mapfile -t tokens < <(SECRET="$secret" COUNT="$count" node --import tsx --input-type=module -e '
  import { signAccessToken } from "./signaling/src/auth/tokens.ts";
  const sign = (userId, role, name) => signAccessToken(process.env.SECRET, { userId, roomId: "demo", role, name });
  console.log(await sign("presenter-1", "presenter", "Presenter"));
  console.log(await sign("moderator-1", "moderator", "Moderator"));
  for (let i = 1; i <= Number(process.env.COUNT); i++) console.log(await sign(`trader-${i}`, "trader", `Trader ${i}`));
')
presenter="${tokens[0]}"
moderator="${tokens[1]}"

{
  echo
  echo "  trading-room cluster: $count nodes sharing redis://127.0.0.1:$redis_port (pid $redis_pid, key prefix ${REDIS_KEY_PREFIX:-trading-room})"
  echo
  for i in $(seq 1 "$count"); do
    base="http://localhost:${ports[$i]}"
    echo "  node-$i  $base  ws://localhost:${ports[$i]}/ws  pid ${node_pids[$((i - 1))]}"
    echo "    demo (trader-$i):  $base/?token=${tokens[$((i + 1))]}"
  done
  echo
  echo "  demo (presenter, node-1):  http://localhost:${ports[1]}/?token=$presenter"
  echo "  presenter token:  $presenter"
  echo "  moderator token:  $moderator"
  echo "  trader token:     ${tokens[2]}   (trader-1; each node's demo URL has its own trader)"
  echo "  admin token:      $admin_token"
  echo
  echo "  nodes:  curl -H \"Authorization: Bearer $admin_token\" http://localhost:${ports[1]}/admin/nodes"
  echo "  drain:  kill -TERM <pid>   or   curl -X POST -H \"Authorization: Bearer …\" <node>/admin/drain"
  echo "  logs:   $log_dir/node-*.log, $log_dir/redis.log"
  if [ -n "$for_seconds" ]; then echo "  stopping by itself in $for_seconds s"; else echo "  Ctrl-C stops everything"; fi
  echo
}

# Until Ctrl-C (or the time is up); a node that exits (a drain you started, a crash) is reported.
exited=()
end=$((SECONDS + ${for_seconds:-0}))
while [ -z "$for_seconds" ] || [ $SECONDS -lt $end ]; do
  for i in $(seq 1 "$count"); do
    pid="${node_pids[$((i - 1))]}"
    if [ -z "${exited[$i]:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
      exited[$i]=1
      wait "$pid" && code=0 || code=$?
      log "node-$i (pid $pid) exited with $code; the others keep running (log: $log_dir/node-$i.log)"
    fi
  done
  kill -0 "$redis_pid" 2>/dev/null || die "redis-server stopped (see $log_dir/redis.log)"
  sleep 1 &
  wait $! || true
done
