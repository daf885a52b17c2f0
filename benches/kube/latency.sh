#!/usr/bin/env bash
# Issue 5's latency goals: for each round and each build in turn, a fresh
# 1M-key load, then the churn (overwrite, compact to head, defragment) with
# the latency prober beside it; then one line per run with put and get p99
# idle and their ratios during compaction and defrag.
#   benches/kube/latency.sh ROUNDS REVKV... > results.jsonl 2> summary.txt
set -euo pipefail
rounds=${1:?rounds}; shift
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${BENCH_DIR:-$here/../../target}/latency.XXXXXX")
trap 'rm -rf "$work"' EXIT
for _ in $(seq 1 "$rounds"); do
  for revkv in "$@"; do
    rm -f "$work/db" && sync
    "$revkv" --db "$work/db" bench --quota-bytes 0 load 1000000 1024 -w json > /dev/null
    line=$("$revkv" --db "$work/db" bench --quota-bytes 0 churn 1024 1 -w json)
    echo "$line"
    echo "$line" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
us = lambda k: d[k] * 1e6
out = [sys.argv[1]]
for op in ("put", "get"):
    idle = us(op + "_p99_idle_s")
    out.append("%s p99 idle %.1f us, compaction %.2fx, defrag %.2fx" % (
        op, idle, us(op + "_p99_compact_s") / idle, us(op + "_p99_defrag_s") / idle))
out.append("compaction %.2f s, defrag %.2f s" % (d["compact_s"], d["defrag_s"]))
print("; ".join(out), file=sys.stderr)
' "$revkv"
  done
done
