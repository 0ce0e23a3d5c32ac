#!/usr/bin/env bash
# Instructions per answer, counted by callgrind: stable where CPU times on
# this shared machine drift by a third within hours. Runs a fan-out of
# POLLERS (default 300) at 1 msg/s twice, with 10 and with 40 messages,
# with one side under `valgrind --tool=callgrind`, and divides the
# difference in instructions by the difference in answers, so that start-up,
# session starts and the ramp cancel out.
#
#   crates/bench/scripts/callgrind-per-answer.sh server target/release/talk
#   crates/bench/scripts/callgrind-per-answer.sh bench target/release/talk
#
# `server`: counts the server (its answer and the next poll it takes in),
# driven by a bench of $TALK (default: the same binary). `bench`: counts an
# in-process bench (`--workers 0`) against a server of $SERVER_TALK
# (default: the same binary). Needs valgrind.
set -euo pipefail
command -v valgrind >/dev/null || { echo "callgrind-per-answer.sh needs valgrind"; exit 1; }
side=$1
measured=$2
pollers=${3:-300}
case $side in
  server) other=${TALK:-$measured} ;;
  bench) other=${SERVER_TALK:-$measured} ;;
  *) echo "say server or bench, not $side"; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Total instructions of one run with `messages` messages. It runs in a
# subshell of its own (`$(count …)`), so it ends its server itself, also
# when the run fails.
count() {
  local messages=$1 out=$work/callgrind.$1 data=$work/data.$1 log=$work/log.$1
  local server_cmd=("$other") bench_cmd=("$other") workers=1
  case $side in
    server) server_cmd=(valgrind --tool=callgrind --callgrind-out-file="$out" "$measured") ;;
    bench) bench_cmd=(valgrind --tool=callgrind --callgrind-out-file="$out" "$measured"); workers=0 ;;
  esac
  mkdir "$data"
  "${server_cmd[@]}" serve --listen 127.0.0.1:0 --data "$data" --session-rate 0 --send-rate 0 --channel-rate 0 --channel-address-rate 0 >"$log" 2>&1 &
  local server=$!
  trap "kill $server 2>/dev/null || true; wait $server 2>/dev/null || true" EXIT
  for _ in $(seq 300); do grep -q 'listening on' "$log" && break; sleep 0.1; done
  local url
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
  local result
  result=$(RUST_LOG=warn "${bench_cmd[@]}" bench fanout --url "$url" --workers "$workers" \
    --pollers "$pollers" --messages "$messages" --interval-ms 1000 --drain-secs 3 2>/dev/null | tail -n 1)
  case $result in
    *'"clean":true'*) ;;
    *) echo "the run with $messages messages was not clean: $result" >&2; exit 1 ;;
  esac
  # SIGINT: a graceful stop, so that callgrind writes the server's counts.
  kill -INT "$server"
  wait "$server" || true
  trap - EXIT
  # awk reads to the end: an early exit would fail the pipe (pipefail).
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}
few=$(count 10)
many=$(count 40)
echo "$side: $(( (many - few) / (30 * pollers) )) instructions per answer ($few at 10 messages, $many at 40, $pollers pollers)"
