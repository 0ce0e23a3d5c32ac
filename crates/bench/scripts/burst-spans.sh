#!/usr/bin/env bash
# How long each burst of a 2 msgs/s fan-out takes on the server's core, next
# to the p99 the bench measures: starts `SERVER serve` pinned to core 0 and
# the fan-out (20 messages, 500 ms apart) on core 1, records both cores with
# `perf` (each sendto and recvfrom, and every switch between tasks) for the
# whole run, and hands the recording to burst-spans.py. Tracepoints only, no
# CPU sampling, so the recording costs little.
#
#   crates/bench/scripts/burst-spans.sh target/release/talk 1000
#
# Needs perf (Debian's linux-perf) and the right to record a whole core.
set -euo pipefail
for tool in perf python3; do
  command -v "$tool" >/dev/null || { echo "burst-spans.sh needs $tool"; exit 1; }
done
server_bin=$1
pollers=${2:-1000}
bench_bin=${TALK:-$server_bin}
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
log=$(mktemp)
samples=$(mktemp)
taskset -c 0 "$server_bin" serve --listen 127.0.0.1:0 --data "$data" --session-rate 0 --send-rate 0 --channel-rate 0 --channel-address-rate 0 >"$log" 2>&1 &
server=$!
recorder=
cleanup() {
  [ -n "$recorder" ] && { kill -INT "$recorder" 2>/dev/null || true; wait "$recorder" 2>/dev/null || true; }
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data" "$log" "$samples"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
perf record -q -a -e syscalls:sys_enter_sendto -e syscalls:sys_enter_recvfrom \
  -e syscalls:sys_exit_recvfrom -e sched:sched_switch -o "$samples" 2>/dev/null &
recorder=$!
sleep 1
RUST_LOG=warn taskset -c 1 "$bench_bin" bench fanout --url "$url" --server-pid "$server" \
  --workers "${WORKERS:-1}" --pollers "$pollers" --messages 20 --interval-ms 500 | grep -E '^ +deliveries'
kill -INT "$recorder"
wait "$recorder" || true
recorder=
perf script -i "$samples" -F comm,pid,tid,cpu,time,event,trace 2>/dev/null | python3 "$here/burst-spans.py" "$server"
