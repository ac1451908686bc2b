#!/usr/bin/env bash
# Exit statuses of a diverging `autorec train --nproc 2`, counted over many runs.
#
# A run whose loss diverges must end with exit status 1 and the one-line divergence error.
# A gloo worker thread releasing its last exchange's tensors while the interpreter shut down
# aborted a rank now and then (SIGABRT; the launcher then reported "killed by SIGABRT"
# instead of the error); it depends on thread timing, so it is counted, not tested once.
#
# Usage: bash benchmarks/nproc_exit_stress.sh [RUNS]
#   RUNS  runs (default 30), each a 3-epoch fit of ML-100K with --lr 1e30 (about 10 s);
#         needs ml-100k under $AUTOREC_DATA_DIR or ../shared/data
# Prints each run's status and first error line, then the counts.
set -u
runs=${1:-30}
data=${AUTOREC_DATA_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
work=$(mktemp -d /tmp/autorec-nproc-stress.XXXXXX)
trap 'rm -rf "$work"' EXIT
ok=0
others=""
for i in $(seq 1 "$runs"); do
  python -m autorec train --data-dir "$data" --nproc 2 --hidden 8 --epochs 3 --lr 1e30 \
    --ranking none --quiet --out "$work/out" > /dev/null 2> "$work/err"
  status=$?
  first=$(head -n 1 "$work/err")
  echo "$i status $status: $first"
  if [ "$status" = 1 ] && [ "$(grep -c . "$work/err")" = 1 ] && [[ "$first" == *diverged* ]]; then
    ok=$((ok + 1))
  else
    others="$others $i"
  fi
done
echo "runs $runs, ended with the divergence error alone (status 1): $ok; others:${others:- none}"
