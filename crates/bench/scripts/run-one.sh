#!/usr/bin/env bash
# Runs one `talk bench` scenario against a fresh `talk serve`, the server
# pinned to core 0 and the bench to core 1, and appends the bench's JSON
# line to $RESULTS (default bench-results.jsonl).
#
#   crates/bench/scripts/run-one.sh fanout --pollers 5000 --messages 100 --interval-ms 100
#
# Server flags come from $SERVER_FLAGS (default: no session-start or send
# limits, as a bench sends from few addresses and sessions). The server is
# ended by its PID when the run ends, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../../.."
TALK=${TALK:-target/release/talk}
# The server binary, when it is not the bench binary (to compare builds).
SERVER_TALK=${SERVER_TALK:-$TALK}
RESULTS=${RESULTS:-bench-results.jsonl}
SERVER_FLAGS=${SERVER_FLAGS:---session-rate 0 --send-rate 0 --channel-rate 0 --channel-address-rate 0}
# A run leaves its pollers' ports on 127.0.0.2 (.3, … with more workers)
# in TIME_WAIT for 60 s; a big run started meanwhile finds too few free
# ports for its own and stalls in its ramp (seen at 19,000 pollers, back
# to back). Wait for them.
for _ in $(seq 75); do
  [ "$(ss -tan state time-wait | wc -l)" -lt 2000 ] && break
  sleep 1
done
data=$(mktemp -d)
log=$(mktemp)
# shellcheck disable=SC2086
taskset -c 0 "$SERVER_TALK" serve --listen 127.0.0.1:0 --data "$data" $SERVER_FLAGS >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data" "$log"; }
trap cleanup EXIT
for _ in $(seq 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "server did not start:"; cat "$log"; exit 1; }
out=$(mktemp)
status=0
RUST_LOG=warn taskset -c 1 "$TALK" bench "$@" --url "$url" --server-pid "$server" | tee "$out" || status=$?
tail -n 1 "$out" >>"$RESULTS"
# Keep the server's log when it warned about something (accept errors, say).
if grep -q -E "WARN|ERROR" "$log"; then
  cp "$log" "${RESULTS%.jsonl}-server-$(date +%s).log"
fi
rm -f "$out"
exit $status
