#!/usr/bin/env bash
# How `autorec train --nproc 2` ends when one of its processes hangs.
#
# Starts a two-process run on ML-100K, stops (SIGSTOP) the second worker after DELAY
# seconds, and reports how long the job took to end after the stop, its exit status and its
# last line on stderr. Expected: the other rank gives up after --dist-timeout seconds, the
# launcher stops the hung one (SIGTERM, then SIGKILL after its 30 s grace), status 1, and a
# line naming the rank that waited and the rank stopped.
#
# Usage: bash benchmarks/hung_rank.sh [DELAY] [TIMEOUT]   (defaults: 20 s, --dist-timeout 20)
# Needs ML-100K under $AUTOREC_DATA_DIR (or ../shared/data).
set -u
delay=${1:-20}
timeout=${2:-20}
data=${AUTOREC_DATA_DIR:-../shared/data}
work=$(mktemp -d /tmp/autorec-hang.XXXXXX)
trap 'rm -rf "$work"' EXIT

autorec train --data-dir "$data" --nproc 2 --epochs 400 --patience 400 --no-refit \
    --ranking none --quiet --dist-timeout "$timeout" > "$work/out.txt" 2> "$work/err.txt" &
launcher=$!
sleep "$delay"
workers=$(pgrep -P "$launcher")
for w in $workers; do workers="$workers $(pgrep -P "$w")"; done
hung=$(echo $workers | awk '{print $2}')
if [ -z "$hung" ]; then echo "no second worker found (did the run end already?)"; exit 1; fi
stopped=$(date +%s.%N)
kill -STOP "$hung"
wait "$launcher"
status=$?
ended=$(date +%s.%N)
kill -CONT "$hung" 2>/dev/null
kill -9 "$hung" 2>/dev/null
python -c "print(f'ended {$ended - $stopped:.1f} s after the stop (--dist-timeout $timeout), exit status $status')"
tail -1 "$work/err.txt"
