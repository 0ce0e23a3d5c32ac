#!/usr/bin/env bash
# Server CPU during a fan-out, to compare two server builds on the same load:
# starts `SERVER serve` pinned to core 0, runs a 5 msgs/s fan-out (100
# messages, 200 ms apart) from core 1, and samples the server's CPU time from
# /proc between 10 s and 18 s into the run, when the pollers are in and the
# messages flow.
#
#   crates/bench/scripts/fanout-cpu.sh target/release/talk 5000
set -euo pipefail
server_bin=$1
pollers=${2:-5000}
bench_bin=${TALK:-$server_bin}
data=$(mktemp -d)
log=$(mktemp)
taskset -c 0 "$server_bin" serve --listen 127.0.0.1:0 --data "$data" --session-rate 0 --send-rate 0 --channel-rate 0 --channel-address-rate 0 >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data" "$log"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
(
  sleep 10; before=$(ticks); sleep 8; after=$(ticks)
  echo "server CPU from 10 s to 18 s: $(( (after - before) * 100 / 800 ))% of a core"
) &
sampler=$!
taskset -c 1 "$bench_bin" bench fanout --url "$url" --pollers "$pollers" --messages 100 \
  --interval-ms 200 --drain-secs 5 | grep -E 'latency|missing' || true
wait "$sampler"
