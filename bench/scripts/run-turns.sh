#!/usr/bin/env bash
# Runs the fan-outs of BENCHMARKS.md against talk and the peers named in
# $PEERS (nchan, socketio, floor; default "nchan"), taking turns run by
# run, so that all of them see the machine in the same hours: each size
# $RUNS times (default 3), each run against a fresh server. talk's runs
# are crates/bench/scripts/run-one.sh's; `floor` is loopback-floor.py's
# bursts (the kernel's cost of one send per answer, no server at all),
# beside the 2 msgs/s fan-out only. JSON lines go to $RESULTS;
# crates/bench/scripts/summarize.py turns them into the tables.
#
#   PEERS="floor nchan socketio" SCENARIOS=fanout2 bench/scripts/run-turns.sh
set -uo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-3}
export RESULTS=${RESULTS:-$PWD/../../bench-results.jsonl}
SIZES=${SIZES:-1000 5000 10000 19000}
SCENARIOS=${SCENARIOS:-fanout10 fanout2}
PEERS=${PEERS:-nchan}
# One bench worker process, as for talk's runs (BENCHMARKS.md, Setup).
COMMON=(--workers "${WORKERS:-1}")
# One fan-out run of talk (`talk`) or of a peer, with the flags given.
fanout() {
  local peer=$1
  shift
  case $peer in
    talk) ../../crates/bench/scripts/run-one.sh fanout "${COMMON[@]}" "$@" ;;
    nchan) ./run-nchan.sh "${COMMON[@]}" "$@" ;;
    socketio) ./run-socketio.sh "${COMMON[@]}" "$@" ;;
  esac
}
for scenario in $SCENARIOS; do
  for size in $SIZES; do
    for run in $(seq "$RUNS"); do
      for peer in talk $PEERS; do
        [ "$peer" = floor ] && [ "$scenario" != fanout2 ] && continue
        echo "== $scenario $size $peer run $run ($(date -u +%H:%M:%S))"
        case $scenario in
          fanout10) fanout "$peer" --pollers "$size" --messages 100 --interval-ms 100 ;;
          fanout2)
            if [ "$peer" = floor ]; then python3 ./loopback-floor.py "$size" | tail -n 1 >>"$RESULTS"
            else fanout "$peer" --pollers "$size" --messages 20 --interval-ms 500; fi ;;
          *) echo "   (only the fan-outs run in turns: $scenario skipped)"; continue ;;
        esac > /dev/null 2>&1 || echo "   (run not clean or failed: exit $?)"
        tail -n 1 "$RESULTS" | cut -c1-160
      done
    done
  done
done
