"""Evaluate a checkpoint: ``python -m launch.eval --checkpoint DIR --suite NAME [--json FILE]``.

``DIR`` is a training workdir (latest checkpoint), its ``checkpoints/`` directory or one ``checkpoints/<step>``.
Suites (``showo_jax/eval/suites.py``): toy, t2i, mmu, heldout, recon, video, geneval_files, llava_json.
Settings come from the run's ``config.eval`` block; override with ``--set num_steps=10 --set guidance_scale=7.5``.
User benchmarks: ``--suite geneval_files --prompts evaluation_metadata.jsonl --out_dir DIR`` (GenEval layout;
``--layout names`` for DPG-Bench ``prompts/``), ``--suite llava_json --llava_json qa.json --image_root DIR``.
"""
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """CLI flags (defined only when run as a script, so importing this module defines no global flags)."""
  flags.DEFINE_string("checkpoint", None, "training workdir, checkpoints dir or one step dir")
  flags.DEFINE_string("suite", "toy", "suite name (showo_jax/eval/suites.py)")
  flags.DEFINE_string("json", None, "write the result JSON here (default: stdout)")
  flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
  flags.DEFINE_multi_string("set", [], "eval setting override key=value (numbers parsed)")
  flags.DEFINE_string("out_dir", "", "directory for sample grids / generated benchmark images")
  flags.DEFINE_string("prompts", "", "geneval_files: GenEval jsonl, DPG prompts dir or .txt")
  flags.DEFINE_enum("layout", "geneval", ["geneval", "names"], "geneval_files output layout")
  flags.DEFINE_string("llava_json", "", "llava_json: LLaVA-style QA file")
  flags.DEFINE_string("image_root", "", "llava_json: image root")
  flags.DEFINE_string("compile_cache", os.path.expanduser("~/.cache/showo_jax/xla"), "XLA cache ('' = off)")
  flags.mark_flags_as_required(["checkpoint"])


def _parse(items):
  out = {}
  for item in items:
    k, _, v = item.partition("=")
    try:
      out[k] = int(v)
    except ValueError:
      try:
        out[k] = float(v)
      except ValueError:
        out[k] = v
  return out


def evaluate(checkpoint: str, suite: str = "toy", *, json_path: str | None = None, step: int | None = None,
             settings: dict | None = None, out_dir: str = "", **suite_kw) -> dict:
  """Load ``checkpoint``, run ``suite``, write strict JSON to ``json_path`` (if given); returns the document."""
  from showo_jax.eval import runs, suites
  run = runs.load_run(checkpoint, step)
  doc = suites.run_suite(suite, run, overrides=settings, out_dir=out_dir, **suite_kw)
  if json_path:
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
      f.write(suites.dumps(doc) + "\n")
  return doc


def main(argv):
  del argv
  import jax
  if FLAGS.compile_cache:
    jax.config.update("jax_compilation_cache_dir", FLAGS.compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  from showo_jax.eval import suites
  kw = {}
  if FLAGS.suite == "geneval_files":
    kw = dict(prompts=FLAGS.prompts, layout=FLAGS.layout)
  elif FLAGS.suite == "llava_json":
    kw = dict(llava_json=FLAGS.llava_json, image_root=FLAGS.image_root)
  doc = evaluate(FLAGS.checkpoint, FLAGS.suite, json_path=FLAGS.json, step=FLAGS.step, settings=_parse(FLAGS.set),
                 out_dir=FLAGS.out_dir, **kw)
  if not FLAGS.json:
    sys.stdout.write(suites.dumps(doc) + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
