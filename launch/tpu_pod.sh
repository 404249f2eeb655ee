#!/usr/bin/env bash
# Train on a Cloud TPU pod slice (or several slices over DCN): run the SAME command on every TPU VM worker.
#
#   gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
#     "cd ~/showo_jax && bash launch/tpu_pod.sh --config configs/showo2/stage2.py:size=7b --workdir gs://BUCKET/run1"
#
# Every argument is passed to `python -m launch.train`. This script only sets the environment:
# the process id / count / coordinator from the TPU VM metadata server (what jax's own Cloud-TPU cluster
# detection reads: `agent-worker-number`, `worker-network-endpoints`), extended over slices when the
# multislice runtime exports MEGASCALE_* variables, so `loop.initialize_distributed` sees the explicit
# JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID. Values already set are kept.
# Check the memory first on this or any machine: python -m launch.aot_compile --topology v5p-128 ...
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PORT="${JAX_COORDINATOR_PORT:-8482}"
MD="http://metadata.google.internal/computeMetadata/v1/instance/attributes"

md() { curl -sf -H "Metadata-Flavor: Google" "$MD/$1"; }

if [[ -z "${JAX_PROCESS_ID:-}" ]]; then
  worker="$(md agent-worker-number || echo 0)"
  endpoints="$(md worker-network-endpoints || true)"
  if [[ -n "$endpoints" ]]; then
    IFS=',' read -r -a eps <<< "$endpoints"
    workers="${#eps[@]}"
    first_ip="$(echo "${eps[0]}" | cut -d: -f3)"
  else
    workers=1
    first_ip="127.0.0.1"
  fi
  slice="${MEGASCALE_SLICE_ID:-0}"
  slices="${MEGASCALE_NUM_SLICES:-1}"
  coord="${MEGASCALE_COORDINATOR_ADDRESS:-$first_ip}"
  coord="${coord%%:*}"
  export JAX_PROCESS_ID=$(( slice * workers + worker ))
  export JAX_NUM_PROCESSES=$(( slices * workers ))
  export JAX_COORDINATOR_ADDRESS="${JAX_COORDINATOR_ADDRESS:-$coord:$PORT}"
fi

# Persistent compile cache next to the code (one per worker VM), as in launch/train.py's default.
export JAX_PLATFORMS="${JAX_PLATFORMS:-tpu}"
echo "[tpu_pod] process ${JAX_PROCESS_ID}/${JAX_NUM_PROCESSES} coordinator ${JAX_COORDINATOR_ADDRESS}" >&2
exec "$PYTHON" -m launch.train "$@"
