#!/usr/bin/env bash
# Where the server's core goes during a fan-out's bursts, split into the two
# phases of a burst: answering the held polls (the server writes) and taking
# in the polls that follow (the server reads). Starts `SERVER serve` pinned
# to core 0 and a 2 msgs/s fan-out on core 1, waits until every poller holds
# a poll, then records core 0 for 4 s with `perf` (CPU samples every 100 µs
# and each sendto/recvfrom) and hands the samples to burst-phases.py.
#
#   crates/bench/scripts/burst-phases.sh target/release/talk 5000
#
# Needs perf (Debian's linux-perf) and the right to record a whole core.
set -euo pipefail
for tool in perf curl python3; do
  command -v "$tool" >/dev/null || { echo "burst-phases.sh needs $tool"; exit 1; }
done
server_bin=$1
pollers=${2:-5000}
bench_bin=${TALK:-$server_bin}
here=$(cd "$(dirname "$0")" && pwd)
period_us=100
data=$(mktemp -d)
log=$(mktemp)
samples=$(mktemp)
taskset -c 0 "$server_bin" serve --listen 127.0.0.1:0 --data "$data" --session-rate 0 --send-rate 0 --channel-rate 0 --channel-address-rate 0 >"$log" 2>&1 &
server=$!
bench=
cleanup() {
  [ -n "$bench" ] && { kill "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true; }
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data" "$log" "$samples"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
RUST_LOG=warn taskset -c 1 "$bench_bin" bench fanout --url "$url" --server-pid "$server" \
  --workers "${WORKERS:-1}" --pollers "$pollers" --messages 60 --interval-ms 500 >/dev/null &
bench=$!
held() { curl -s "$url/metrics" | awk '$1 == "talk_polls_held" {print $2}'; }
for _ in $(seq 120); do
  [ "$(held)" -ge "$pollers" ] 2>/dev/null && break
  sleep 0.5
done
[ "$(held)" -ge "$pollers" ] 2>/dev/null || { echo "the pollers did not all get in"; exit 1; }
sleep 2
perf record -q -C 0 -g -e "cpu-clock/period=$((period_us * 1000))/" -e syscalls:sys_enter_sendto \
  -e syscalls:sys_enter_recvfrom -o "$samples" -- sleep 4 2>/dev/null
perf script -i "$samples" -F event,ip,sym 2>/dev/null | python3 "$here/burst-phases.py" "$period_us"
