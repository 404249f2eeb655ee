"""``launch/tpu_pod.sh`` and ``launch/gpu_slurm.sh`` derive the jax.distributed environment correctly.

The scripts run with fake ``curl`` (TPU metadata server) / ``scontrol`` / ``srun`` on ``PATH`` and
``PYTHON`` pointing at a stub that prints the environment instead of training.
"""
import os
import stat
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _exe(path, body):
  path.write_text("#!/usr/bin/env bash\n" + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(script, tmp_path, env_extra, args=("--config", "c.py", "--workdir", "w")):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  _exe(bin_dir / "fakepython", 'echo "ARGS=$*"; env | grep -E "^(JAX_|CUDA_VISIBLE|XLA_FLAGS)" | sort\n')
  env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": str(bin_dir / "fakepython"), **env_extra}
  p = subprocess.run(["bash", os.path.join(REPO, "launch", script), *args], capture_output=True, text=True,
                     env=env, cwd=REPO, timeout=60)
  assert p.returncode == 0, p.stderr
  return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)


def test_tpu_pod_from_metadata(tmp_path):
  (tmp_path / "bin").mkdir()
  _exe(tmp_path / "bin" / "curl", '''case "$*" in
  *agent-worker-number*) echo -n 2 ;;
  *worker-network-endpoints*) echo -n "a:b:10.0.0.5,a:b:10.0.0.6,a:b:10.0.0.7,a:b:10.0.0.8" ;;
  *) exit 22 ;;
esac
''')
  out = _run("tpu_pod.sh", tmp_path, {})
  assert out["JAX_PROCESS_ID"] == "2" and out["JAX_NUM_PROCESSES"] == "4"
  assert out["JAX_COORDINATOR_ADDRESS"] == "10.0.0.5:8482"
  assert out["ARGS"] == "-m launch.train --config c.py --workdir w"
  # multislice: slice 1 of 2, coordinator from the megascale runtime
  out = _run("tpu_pod.sh", tmp_path, {"MEGASCALE_SLICE_ID": "1", "MEGASCALE_NUM_SLICES": "2",
                                      "MEGASCALE_COORDINATOR_ADDRESS": "10.1.0.1:8080"})
  assert out["JAX_PROCESS_ID"] == "6" and out["JAX_NUM_PROCESSES"] == "8"
  assert out["JAX_COORDINATOR_ADDRESS"] == "10.1.0.1:8482"


def test_gpu_slurm_task_env(tmp_path):
  (tmp_path / "bin").mkdir()
  _exe(tmp_path / "bin" / "scontrol", 'echo gpu-node-17; echo gpu-node-18\n')
  out = _run("gpu_slurm.sh", tmp_path, {"SLURM_JOB_ID": "9", "SLURM_PROCID": "11", "SLURM_NTASKS": "16",
                                        "SLURM_LOCALID": "3", "SLURM_STEP_NODELIST": "gpu-node-[17-18]",
                                        "SHOWO_SLURM_TASK": "1", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"})
  assert out["JAX_COORDINATOR_ADDRESS"] == "gpu-node-17:8482"
  assert out["JAX_NUM_PROCESSES"] == "16" and out["JAX_PROCESS_ID"] == "11"
  assert out["CUDA_VISIBLE_DEVICES"] == "3"
  assert out["ARGS"] == "-m launch.train --config c.py --workdir w"


def test_gpu_slurm_batch_script_relaunches_with_srun(tmp_path):
  (tmp_path / "bin").mkdir()
  _exe(tmp_path / "bin" / "srun", 'echo "SRUN=$*"\n')
  out = _run("gpu_slurm.sh", tmp_path, {"SLURM_JOB_ID": "9"})
  assert out["SRUN"].startswith("--kill-on-bad-exit=1 bash ") and out["SRUN"].endswith(
      "gpu_slurm.sh --config c.py --workdir w")
