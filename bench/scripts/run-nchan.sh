#!/usr/bin/env bash
# Runs `talk-peers fanout --peer nchan` against a fresh nginx with the Nchan
# module (bench/peers/nchan/nginx.conf), nginx pinned to core 0 and the
# bench to core 1 as in crates/bench/scripts/run-one.sh, and appends the bench's JSON line to
# $RESULTS (default bench-results.jsonl). The server CPU and memory are its
# one worker process's.
#
#   bench/scripts/run-nchan.sh --workers 1 --pollers 5000 --messages 100 --interval-ms 100
#
# nginx is ended by its master's PID when the run ends, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Built by `cargo build --release --manifest-path bench/Cargo.toml --target-dir target`.
TALK_PEERS=${TALK_PEERS:-target/release/talk-peers}
RESULTS=${RESULTS:-bench-results.jsonl}
NGINX=${NGINX:-/usr/sbin/nginx}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
[ -x "$NGINX" ] || { echo "no nginx at $NGINX (apt-get install nginx-light)"; exit 1; }
[ -f "$NCHAN_MODULE" ] || { echo "no Nchan module at $NCHAN_MODULE (apt-get install libnginx-mod-nchan)"; exit 1; }
# As in run-one.sh: wait for the last run's ports in TIME_WAIT to be freed.
for _ in $(seq 75); do
  [ "$(ss -tan state time-wait | wc -l)" -lt 2000 ] && break
  sleep 1
done
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=$(mktemp -d)
master=""
cleanup() {
  if [ -n "$master" ]; then
    # SIGTERM to the master, which stops its worker and exits.
    kill -TERM "$master" 2>/dev/null || true
    wait "$master" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
sed -e "s|@MODULE@|$NCHAN_MODULE|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@DIR@|$dir|g" \
  bench/peers/nchan/nginx.conf >"$dir/nginx.conf"
taskset -c 0 "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
master=$!
worker=""
for _ in $(seq 100); do
  if [ -z "$worker" ]; then worker=$(ps -o pid= --ppid "$master" | head -1 | tr -d ' ') || true; fi
  [ -n "$worker" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$master" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$worker" ] || ! kill -0 "$master" 2>/dev/null; then
  echo "nginx did not start:"; cat "$dir/error.log" 2>/dev/null || true; exit 1
fi
out=$(mktemp)
status=0
RUST_LOG=warn taskset -c 1 "$TALK_PEERS" fanout --peer nchan "$@" --url "http://127.0.0.1:$port" \
  --server-pid "$worker" | tee "$out" || status=$?
tail -n 1 "$out" >>"$RESULTS"
# Keep nginx's error log when it said anything but the expected warning
# about worker_connections above the open-files limit (see nginx.conf).
if grep -v -q "exceed open file resource limit" "$dir/error.log" 2>/dev/null; then
  cp "$dir/error.log" "${RESULTS%.jsonl}-nginx-$(date +%s).log"
fi
rm -f "$out"
exit $status
