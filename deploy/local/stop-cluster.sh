#!/usr/bin/env bash
# Stop the scheduler and workers started by start-cluster.sh STATE_DIR (TERM, then KILL).
set -uo pipefail

state=${1:?usage: stop-cluster.sh STATE_DIR}
pids=()
for file in "$state"/worker-*.pid "$state"/scheduler.pid; do
    [[ -f "$file" ]] && pids+=("$(cat "$file")")
done
((${#pids[@]})) || exit 0
for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
done
deadline=$((SECONDS + 10))
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
done
rm -f "$state"/*.pid "$state/scheduler.json"
exit 0
