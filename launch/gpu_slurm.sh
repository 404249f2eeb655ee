#!/usr/bin/env bash
# Train on GPU nodes under Slurm: one process per GPU, jax.distributed from the Slurm environment.
#
#   sbatch --nodes=4 --ntasks-per-node=8 --gpus-per-node=8 --cpus-per-task=12 \
#     launch/gpu_slurm.sh --config configs/showo2/stage2.py:size=7b --workdir /shared/runs/run1
#
# As the batch script it re-launches itself once per task with `srun`; as a task it exports
# JAX_COORDINATOR_ADDRESS (first node of the step, port 8482 unless JAX_COORDINATOR_PORT),
# JAX_NUM_PROCESSES (= SLURM_NTASKS) and JAX_PROCESS_ID (= SLURM_PROCID), pins the task to its GPU
# (CUDA_VISIBLE_DEVICES = SLURM_LOCALID unless Slurm already bound one) and runs `python -m launch.train`
# with every argument. No other logic lives here.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PORT="${JAX_COORDINATOR_PORT:-8482}"

if [[ -z "${SLURM_PROCID:-}" || -z "${SHOWO_SLURM_TASK:-}" ]]; then
  if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    echo "gpu_slurm.sh: not inside a Slurm allocation (use sbatch/salloc)" >&2
    exit 2
  fi
  export SHOWO_SLURM_TASK=1
  exec srun --kill-on-bad-exit=1 bash "$0" "$@"
fi

nodes="${SLURM_STEP_NODELIST:-${SLURM_JOB_NODELIST}}"
# sed reads the whole list (head would close the pipe early: SIGPIPE under pipefail)
head_node="$(scontrol show hostnames "$nodes" | sed -n 1p)"
export JAX_COORDINATOR_ADDRESS="${JAX_COORDINATOR_ADDRESS:-$head_node:$PORT}"
export JAX_NUM_PROCESSES="${SLURM_NTASKS}"
export JAX_PROCESS_ID="${SLURM_PROCID}"
if [[ -z "${CUDA_VISIBLE_DEVICES:-}" || "${CUDA_VISIBLE_DEVICES}" == *,* ]]; then
  export CUDA_VISIBLE_DEVICES="${SLURM_LOCALID}"
fi
# Latency-hiding scheduler and collective overlap (MaxText's A3 settings); extend, never replace, user flags.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
exec "$PYTHON" -m launch.train "$@"
