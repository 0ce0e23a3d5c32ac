#!/usr/bin/env bash
# Runs `talk-peers fanout --peer socketio` against a fresh Socket.IO server
# (bench/peers/socketio/server.js on Node, long-polling only), the node
# process pinned to core 0 and the bench to core 1 as in crates/bench/scripts/run-one.sh, and
# appends the bench's JSON line to $RESULTS (default bench-results.jsonl).
# The server CPU and memory are the node process's.
#
#   bench/scripts/run-socketio.sh --workers 1 --pollers 5000 --messages 100 --interval-ms 100
#
# Needs node (20+) and `npm ci` in bench/peers/socketio. The node process
# is ended by its PID when the run ends, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Built by `cargo build --release --manifest-path bench/Cargo.toml --target-dir target`.
TALK_PEERS=${TALK_PEERS:-target/release/talk-peers}
RESULTS=${RESULTS:-bench-results.jsonl}
NODE=${NODE:-node}
server_dir=bench/peers/socketio
command -v "$NODE" >/dev/null || { echo "no $NODE (apt-get install nodejs)"; exit 1; }
[ -d "$server_dir/node_modules/socket.io" ] || { echo "no $server_dir/node_modules (npm ci in $server_dir)"; exit 1; }
# As in run-one.sh: wait for the last run's ports in TIME_WAIT to be freed.
for _ in $(seq 75); do
  [ "$(ss -tan state time-wait | wc -l)" -lt 2000 ] && break
  sleep 1
done
log=$(mktemp)
# Node takes the soft open-files limit as it is; give it the hard limit, as
# talk and nginx (worker_rlimit_nofile) have.
ulimit -n "$(ulimit -Hn)"
taskset -c 0 "$NODE" "$server_dir/server.js" 0 >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
url=""
for _ in $(seq 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || { echo "the Socket.IO server did not start:"; cat "$log"; exit 1; }
out=$(mktemp)
status=0
RUST_LOG=warn taskset -c 1 "$TALK_PEERS" fanout --peer socketio "$@" --url "$url" \
  --server-pid "$server" | tee "$out" || status=$?
tail -n 1 "$out" >>"$RESULTS"
# Keep the server's output when it said anything but where it listens.
if grep -v -q "^listening on " "$log"; then
  cp "$log" "${RESULTS%.jsonl}-socketio-$(date +%s).log"
fi
rm -f "$out"
exit $status
