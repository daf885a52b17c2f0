#!/usr/bin/env bash
# The phases whose goals the issues name, etcd's peer then revkv, each on its
# own fresh 1M-key load, repeated ROUNDS times; one JSON line per phase.
#   benches/kube/side_by_side.sh ROUNDS PEER REVKV > results.jsonl
# PEER: built by ../shared/peers/etcd-mvcc/build.sh; REVKV: a build of
# `cargo build --release --features cli`. Files go under $BENCH_DIR (target/).
set -euo pipefail
rounds=${1:?rounds}; peer=${2:?peer binary}; revkv=${3:?revkv binary}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${BENCH_DIR:-$here/../../target}/sbs.XXXXXX")
trap 'rm -rf "$work"' EXIT
for _ in $(seq 1 "$rounds"); do
  rm -rf "$work/e" && mkdir -p "$work/e" && sync
  "$peer" load "$work/e" 1000000 1024 | tail -n 1
  "$peer" range "$work/e" | tail -n 1
  "$peer" get "$work/e" 100000 | tail -n 1
  "$peer" txn "$work/e" 100000 | tail -n 1
  "$peer" churn "$work/e" 1024 | tail -n 1
  rm -rf "$work/e" "$work/r.db" && sync
  for phase in "load 1000000 1024" "range" "get 100000" "txn 100000" "churn 1024 0"; do
    # shellcheck disable=SC2086 # the phase and its arguments split on purpose
    "$revkv" --db "$work/r.db" bench --quota-bytes 0 $phase -w json
  done
  rm -f "$work/r.db"
done
