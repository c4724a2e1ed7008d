#!/usr/bin/env bash
# Start a Dask scheduler and N workers on this machine, bound to 127.0.0.1, in the background.
#
#   deploy/local/start-cluster.sh STATE_DIR [N_WORKERS] [PORT]
#
# Prints the scheduler address. State (pid files, logs, scheduler.json) goes to STATE_DIR;
# stop everything with deploy/local/stop-cluster.sh STATE_DIR.
# Environment: PYTHON (default python3), DASK_TLS_CA/DASK_TLS_CERT/DASK_TLS_KEY (PEM files:
# serve tls:// instead of tcp://), WORKER_ARGS (extra `dask worker` flags, e.g. --no-nanny),
# START_TIMEOUT (seconds to wait for the scheduler and workers, default 60).
set -euo pipefail

state=${1:?usage: start-cluster.sh STATE_DIR [N_WORKERS] [PORT]}
n_workers=${2:-2}
port=${3:-8786}
python=${PYTHON:-python3}
deadline=$((SECONDS + ${START_TIMEOUT:-60}))
mkdir -p "$state"
state=$(cd "$state" && pwd)

protocol=tcp
tls=()
if [[ -n "${DASK_TLS_CA:-}" ]]; then
    protocol=tls
    tls=(--tls-ca-file "$DASK_TLS_CA" --tls-cert "$DASK_TLS_CERT" --tls-key "$DASK_TLS_KEY")
fi
address="$protocol://127.0.0.1:$port"

setsid "$python" -m dask scheduler --host 127.0.0.1 --port "$port" --protocol "$protocol" \
    --dashboard-address 127.0.0.1:0 --scheduler-file "$state/scheduler.json" \
    --pid-file "$state/scheduler.pid" "${tls[@]}" >"$state/scheduler.log" 2>&1 &

until [[ -s "$state/scheduler.json" ]]; do
    if ((SECONDS > deadline)); then
        echo "error: scheduler did not start; see $state/scheduler.log" >&2
        exit 1
    fi
    sleep 0.2
done

for ((i = 1; i <= n_workers; i++)); do
    # shellcheck disable=SC2086  # WORKER_ARGS is a list of flags
    setsid "$python" -m dask worker "$address" --host 127.0.0.1 --name "local-$i" \
        --nthreads 1 --nworkers 1 --dashboard-address 127.0.0.1:0 \
        --local-directory "$state/worker-$i" --pid-file "$state/worker-$i.pid" \
        "${tls[@]}" ${WORKER_ARGS:-} >"$state/worker-$i.log" 2>&1 &
done

# Ready when the scheduler log has seen every worker register.
until (($(grep -c "Register worker" "$state/scheduler.log" || true) >= n_workers)); do
    if ((SECONDS > deadline)); then
        echo "error: workers did not register; see $state/worker-*.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "$address"
