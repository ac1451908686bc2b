#!/usr/bin/env bash
# Exit statuses of `autorec train` on bad input while the cores are busy.
#
# Bad input must end with exit status 2 and one line. A pyarrow reader stopped by an error
# used to release Python objects in one of its threads while the interpreter shut down, which
# aborted the process (status 134) about 1 run in 5 to 10 on busy cores; the abort depends on
# thread timing, so it is counted over many runs, not tested once.
#
# Usage: bash benchmarks/bad_input_stress.sh [RUNS] [BUSY]
#   RUNS  runs of each bad file (default 40): a corrupt Parquet file, the same gzipped, a
#         CSV with a missing id on its third line, a CSV with a row of too many fields on its
#         third line, and a Netflix Prize file with a bad rating on its last line
#   BUSY  busy-looping processes beside them (default 3)
# Prints one line per file: runs, how many exited 2, and every other status seen.
set -u
runs=${1:-40}
busy=${2:-3}
work=$(mktemp -d /tmp/autorec-stress.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

python - "$work" <<'EOF'
import sys
import numpy as np
import pandas as pd

work = sys.argv[1]
rng = np.random.default_rng(0)
n = 2_000_000
frame = pd.DataFrame({"user_id": rng.integers(0, 50_000, n), "item_id": rng.integers(0, 5_000, n),
                      "rating": rng.integers(1, 6, n).astype(float)})
frame.to_parquet(f"{work}/good.parquet", row_group_size=100_000)
data = bytearray(open(f"{work}/good.parquet", "rb").read())
middle = len(data) // 2
data[middle:middle + 5000] = bytes(5000)  # zeros over some of the column chunks
open(f"{work}/bad.parquet", "wb").write(bytes(data))
lines = ["user_id,item_id,rating"] + [f"{u},{i},4" for u, i in zip(range(400_000), range(400_000))]
lines[2] = ",5,4"  # a missing user id on line 3
open(f"{work}/bad.csv", "w").write("\n".join(lines) + "\n")
lines[2] = "5,6,3,9"  # a row of 4 fields on line 3 (found by the reader's second pass)
open(f"{work}/more.csv", "w").write("\n".join(lines) + "\n")
# the Netflix Prize layout, 2M ratings over 2,000 movies, a rating that is not a number in the
# last movie's block
with open(f"{work}/bad.netflix.txt", "w") as out:
    for movie in range(1, 2001):
        out.write(f"{movie}:\n")
        out.write("".join(f"{u},4,2005-01-01\n" for u in range(1, 1001)))
    out.write("7,x,2005-01-01\n")
EOF
gzip -k "$work/bad.parquet"

for _ in $(seq "$busy"); do (while :; do :; done) & done
for file in bad.parquet bad.parquet.gz bad.csv more.csv bad.netflix.txt; do
    two=0
    others=""
    for _ in $(seq "$runs"); do
        autorec train --data "$work/$file" --epochs 1 --quiet --out "$work/out" \
            > /dev/null 2> "$work/err.txt"
        status=$?
        if [ "$status" -eq 2 ]; then two=$((two + 1)); else others="$others $status"; fi
    done
    echo "$file: $runs runs, $two exited 2; other statuses:${others:- none}"
done
