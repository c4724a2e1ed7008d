#!/usr/bin/env bash
# Stop the SeaweedFS server started by start-s3.sh STATE_DIR (TERM, then KILL); data stays.
set -uo pipefail

state=${1:?usage: stop-s3.sh STATE_DIR}
[[ -f "$state/weed.pid" ]] || exit 0
pid=$(cat "$state/weed.pid")
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
deadline=$((SECONDS + 10))
while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
rm -f "$state/weed.pid"
exit 0
