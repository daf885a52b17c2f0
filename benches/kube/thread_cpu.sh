#!/usr/bin/env bash
# Runs a command and, after its output, prints the CPU time (user + system)
# each of its threads had used at the last look, summed by thread name:
# which thread a phase waits for (the writer or the background syncer).
#   benches/kube/thread_cpu.sh revkv --db DB bench txn 100000 -w json
set -uo pipefail
"$@" &
pid=$!
seen=$(mktemp)
trap 'rm -f "$seen"' EXIT
tick=$(getconf CLK_TCK)
while kill -0 "$pid" 2>/dev/null; do
  for t in /proc/"$pid"/task/*; do
    echo "$(basename "$t") $(cat "$t/comm" 2>/dev/null) $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
  done >> "$seen" 2>/dev/null
  sleep 0.05
done
wait "$pid"
awk -v tick="$tick" 'NF == 3 {last[$1] = $2 " " $3}
  END {for (t in last) {split(last[t], f, " "); cpu[f[1]] += f[2]}
       for (n in cpu) printf "%s=%.2fs ", n, cpu[n] / tick; print ""}' "$seen"
