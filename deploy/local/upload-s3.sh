#!/usr/bin/env bash
# Copy a local store or model folder to object storage, e.g. after jobs.prepare / jobs.train:
#
#   deploy/local/upload-s3.sh ~/mnist_dist_data/mnist.zarr s3://BUCKET/mnist.zarr
#   deploy/local/upload-s3.sh ~/mnist_dist_data/models s3://BUCKET/models
#
# Credentials and endpoint as for the jobs: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_ENDPOINT_URL or ~/.aws. The bucket is created when missing. Readers verify what arrives:
# the store's chunks are checked complete and every model file against its manifest SHA-256.
# Environment: PYTHON (default python3, with s3fs installed: pip install '.[s3]').
set -euo pipefail

src=${1:?usage: upload-s3.sh LOCAL_FOLDER s3://BUCKET/PATH}
dest=${2:?usage: upload-s3.sh LOCAL_FOLDER s3://BUCKET/PATH}
[[ -d "$src" ]] || { echo "error: $src is not a folder" >&2; exit 1; }

"${PYTHON:-python3}" - "$src" "$dest" <<'EOF'
import sys
import fsspec

src, dest = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
fs, path = fsspec.core.url_to_fs(dest)
bucket = path.split("/", 1)[0]
if not fs.exists(bucket):
    fs.mkdir(bucket)
if fs.exists(path):
    fs.rm(path, recursive=True)
fs.put(src + "/", path, recursive=True)
print(dest)
EOF
