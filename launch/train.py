"""Train from a config: ``python -m launch.train --config configs/showo2/stage1.py:runlocal --workdir DIR``.

Overrides: ``--config.optim.lr=3e-5 --config.data.t2i.path=/data/t2i``. Multi-host: set
``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` (or run under SLURM/Open MPI/TPU pods);
every process runs the same command. ``--num_steps N`` stops after N more steps (checkpointed).
"""
import logging
import os

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:args]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, samples)")
_NUM_STEPS = flags.DEFINE_integer("num_steps", None, "stop after this many more steps")
_CACHE = flags.DEFINE_string("compile_cache", os.path.expanduser("~/.cache/showo_jax/xla"),
                             "persistent XLA compilation cache ('' to disable)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  import jax
  from showo_jax.train import loop
  loop.initialize_distributed()
  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", _CACHE.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)          # Orbax/grain chatter
  ours = logging.getLogger("showo_jax")
  ours.setLevel(logging.INFO)
  ours.addHandler(logging.StreamHandler())
  ours.propagate = False
  config = _CONFIG.value
  if config.model_family == "showo":         # Show-o v1 rows come from their own pipeline (data/pipeline_v1.py)
    from showo_jax.data import pipeline_v1
    summary = pipeline_v1.train(config, _WORKDIR.value, num_steps=_NUM_STEPS.value)
  else:
    summary = loop.run(config, _WORKDIR.value, num_steps=_NUM_STEPS.value)
  if jax.process_index() == 0:
    losses = summary["losses"]
    print(f"done: steps {summary['start_step']} -> {summary['final_step']} ({summary['origin']}); "
          f"loss {losses[0] if losses else float('nan'):.4f} -> {losses[-1] if losses else float('nan'):.4f}")


if __name__ == "__main__":
  app.run(main)
