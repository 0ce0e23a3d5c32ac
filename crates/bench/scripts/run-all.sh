#!/usr/bin/env bash
# Runs every scenario of BENCHMARKS.md against talk: each size $RUNS times
# (default 3), each run against a fresh server (see run-one.sh). JSON lines
# go to $RESULTS; summarize.py turns them into the tables. The fan-outs
# against the peers, in turns with talk, are the peer bench's
# (bench/scripts/run-turns.sh).
set -uo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-3}
export RESULTS=${RESULTS:-$PWD/../../../bench-results.jsonl}
SIZES=${SIZES:-1000 5000 10000 19000}
SCENARIOS=${SCENARIOS:-fanout10 fanout2 capacity throughput}
# Bench worker processes. One holds every size (19,000 sockets fit in its
# open-files limit); more than one share the bench core between gates
# that cannot see each other's answers (bench/HISTORY.md, round 12).
COMMON=(--workers "${WORKERS:-1}")
for scenario in $SCENARIOS; do
  for size in $SIZES; do
    for run in $(seq "$RUNS"); do
      echo "== $scenario $size run $run ($(date -u +%H:%M:%S))"
      case $scenario in
        fanout10) ./run-one.sh fanout "${COMMON[@]}" --pollers "$size" --messages 100 --interval-ms 100 ;;
        fanout2) ./run-one.sh fanout "${COMMON[@]}" --pollers "$size" --messages 20 --interval-ms 500 ;;
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
