#!/usr/bin/env bash
# Runs every scenario of BENCHMARKS.md: each size $RUNS times (default 3),
# each run against a fresh server (see run-one.sh). JSON lines go to
# $RESULTS; summarize.py turns them into the tables. The fan-outs also run
# against each peer named in $PEERS (nchan, socketio; default none), taking
# turns with talk run by run, so that both see the machine in the same hours.
# `floor` in $PEERS adds loopback-floor.py's bursts (the kernel's cost of one
# send per answer, no server at all) beside the 2 msgs/s fan-out.
set -uo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-3}
export RESULTS=${RESULTS:-$PWD/../../../bench-results.jsonl}
SIZES=${SIZES:-1000 5000 10000 19000}
SCENARIOS=${SCENARIOS:-fanout10 fanout2 capacity throughput}
PEERS=${PEERS:-}
# Bench worker processes. One holds every size (19,000 sockets fit in its
# open-files limit); more than one share the bench core between gates
# that cannot see each other's answers (BENCHMARKS.md, round 12).
COMMON=(--workers "${WORKERS:-1}")
# One fan-out run of talk (`talk`) or of a peer, with the flags given.
fanout() {
  local peer=$1
  shift
  case $peer in
    talk) ./run-one.sh fanout "${COMMON[@]}" "$@" ;;
    nchan) ./run-nchan.sh "${COMMON[@]}" "$@" ;;
    socketio) ./run-socketio.sh "${COMMON[@]}" "$@" ;;
  esac
}
# The loopback floor beside a 2 msgs/s fan-out of the given size.
floor() {
  python3 ./loopback-floor.py "$1" | tail -n 1 >>"$RESULTS"
}
for scenario in $SCENARIOS; do
  for size in $SIZES; do
    for run in $(seq "$RUNS"); do
      for peer in talk $PEERS; do
        case $scenario in fanout*) ;; *) [ "$peer" = talk ] || continue ;; esac
        [ "$peer" = floor ] && [ "$scenario" != fanout2 ] && continue
        echo "== $scenario $size $peer run $run ($(date -u +%H:%M:%S))"
        case $scenario in
          fanout10) fanout "$peer" --pollers "$size" --messages 100 --interval-ms 100 ;;
          fanout2)
            if [ "$peer" = floor ]; then floor "$size"
            else fanout "$peer" --pollers "$size" --messages 20 --interval-ms 500; fi ;;
          capacity)
            hold=30; [ "$size" -ge 19000 ] && hold=120
            ./run-one.sh capacity "${COMMON[@]}" --pollers "$size" --hold-secs "$hold" ;;
          throughput)
            ./run-one.sh throughput "${COMMON[@]}" --channels $((size / 100)) --pollers-per-channel 100 \
              --rates 250,500,1000,2000,4000,8000,16000 --step-secs 10 --sends-per-session 1000 ;;
        esac > /dev/null 2>&1 || echo "   (run not clean or failed: exit $?)"
        tail -n 1 "$RESULTS" | cut -c1-160
      done
    done
  done
done
