#!/usr/bin/env bash
# Side-by-side run of the kube workload (../shared/peers/README.md) on revkv
# and on etcd 3.4's own mvcc store, phase by phase, in one run.
#   benches/kube/run.sh [N] [VALUE_SIZE] > results.jsonl
# Needs: Debian's golang-go and golang-etcd-server-dev (installed if missing).
set -euo pipefail
N=${1:-1000000}
VS=${2:-1024}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${SHARED:-$repo/../shared}
work=$(mktemp -d "${BENCH_DIR:-$repo/target}/kube.XXXXXX")
trap 'rm -rf "$work"' EXIT

if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/go.etcd.io ]; then
  apt-get update >/dev/null && apt-get install -y golang-go golang-etcd-server-dev >/dev/null
fi
"$shared/peers/etcd-mvcc/build.sh" "$work/peer-etcd" >&2
(cd "$repo" && cargo build --release --features cli >&2)
REVKV="$repo/target/release/revkv"
PEER="$work/peer-etcd"
mkdir -p "$work/etcd" "$work/revkv"
probe() { python3 "$shared/peers/memprobe.py" -- "$@" | tail -n 1 >&2; }

run() { # phase args...
  local phase=$1; shift
  echo "# $phase $*" >&2
  "$PEER" "$phase" "$work/etcd" "$@"
  "$REVKV" --db "$work/revkv/db" bench "$phase" "$@"
}

run load "$N" "$VS"
for i in 1 2 3; do run open; done
for i in 1 2 3; do run get 100000; done
run range
echo "# memprobe range (peak anonymous memory)" >&2
probe "$PEER" range "$work/etcd"
probe "$REVKV" --db "$work/revkv/db" bench range
run first
run paged 500
for i in 1 2 3; do run txn 100000; done
echo "# stream (revkv only: etcd 3.4 has no RangeStream)" >&2
for i in 1 2 3; do "$REVKV" --db "$work/revkv/db" bench stream 500; done
probe "$REVKV" --db "$work/revkv/db" bench stream 500
"$REVKV" --db "$work/revkv/db" bench streams 1
"$REVKV" --db "$work/revkv/db" bench streams 10
probe "$REVKV" --db "$work/revkv/db" bench streams 10
# Side by side as the peer runs it, nothing else running; then revkv again
# with its prober (point gets and puts timed before and during compaction
# and defrag: the latency figures of issue 5).
run churn "$VS" 0
"$REVKV" --db "$work/revkv/db" bench churn "$VS" 1
