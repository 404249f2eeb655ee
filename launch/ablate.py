"""Run one ablation study: train every arm from the same seed and data order, evaluate, write ``results/<study>/``.

  python -m launch.ablate tab10_fusion --scale tiny
  python -m launch.ablate tab11_cfg_steps --scale tiny --arms cfg5_steps25,cfg7p5_steps50
  python -m launch.ablate v1_representation --scale tiny --work /tmp/showo_ablate
  python -m launch.ablate --list
  python -m launch.ablate --calibrate             # model-free reference numbers → results/calibration.json

Studies and arms: ``configs/showo2/ablations.py`` (Show-o2) and ``configs/showo/ablations.py`` (Show-o v1).
Each arm trains through the shared train loop (``showo_jax.train.loop``; Show-o v1 toy runs through the same
``Trainer`` with the data of ``showo_jax.eval.v1_toy``), in ``<work>/<study>/<train dir>``, then is evaluated
with the study's suite (``showo_jax.eval.suites``). Arms whose configs differ only in ``eval.*`` (Tab.11)
share one training run. Derived runs: ``followup`` (a second stage started from the arm's final parameters,
Tab.12) and ``pretrain`` (a text-only LLM warm-up that initialises the arm, Tab.13), each trained once.
Arms that read cached latents (``latent_caching``) get their ArrayRecords of Wan VAE posteriors written first
(:func:`build_latent_cache`, with ``showo_jax.tools.cache_latents``) into ``<work>/<study>/latent_cache_<key>``;
the ``speed`` suite reports their training throughput. Show-o v1 T2I configs (``model_family = "showo"``,
``v1_maskgit``) train through ``data/pipeline_v1.py`` and are sampled by MaskGIT in the ``t2i`` suite.

Outputs (small files only, meant to be committed): ``results/<study>/<arm>.json`` (metrics, settings, the
config diff against the study base, training wall time, a subsampled loss curve, hardware), ``README.md`` (the
table), ``loss_curves.png``, ``metrics.png``, ``samples/<arm>/t2i_samples.png``.

Resume: an arm is done when its JSON exists with ``"complete": true`` (the per-arm marker); a killed sweep
re-run skips done arms, and an arm killed mid-training resumes from its last checkpoint (the train loop's own
resume; ``<train dir>/TRAINED`` marks a finished training). Arms can be split over processes or machines
with ``--arms`` against the same ``--results`` and ``--work`` directories.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """CLI flags (defined only when run as a script, so importing this module defines no global flags)."""
  flags.DEFINE_enum("scale", "tiny", ["tiny", "small", "full"], "toy (tiny/small) or real scale")
  flags.DEFINE_list("arms", [], "only these arms (default: all)")
  flags.DEFINE_string("results", "results", "results root (small files)")
  flags.DEFINE_string("work", os.path.join("/tmp", "showo_ablate"), "checkpoints root (large files)")
  flags.DEFINE_bool("list", False, "list studies and arms")
  flags.DEFINE_bool("calibrate", False, "write <results>/calibration.json (model-free reference numbers)")
  flags.DEFINE_string("compile_cache", os.path.expanduser("~/.cache/showo_jax/xla"), "XLA cache ('' = off)")
  flags.DEFINE_integer("steps", None, "override total_steps of every arm (quick checks)")


# ------------------------------------------------------------------------------------------ registry
def registry() -> dict:
  """study name → (ablation module, Study) over both model families."""
  from configs.showo import ablations as v1
  from configs.showo2 import ablations as v2
  out = {name: (v2, st) for name, st in v2.STUDIES.items()}
  out.update({name: (v1, st) for name, st in v1.STUDIES.items()})
  return out


def arm_configs(study: str, scale: str, arms: list[str] | None = None, steps: int | None = None) -> dict:
  """``arm → locked config`` (and ``"__base__"`` → the unlocked study base)."""
  from configs import common
  mod, st = registry()[study]
  base = mod.base_config(study, scale)
  out = {"__base__": base}
  for name in st.arms:
    if arms and name not in arms:
      continue
    c = mod.apply(name, mod.base_config(study, scale))
    if steps is not None:
      c.total_steps = int(steps)
      if int(c.followup.total_steps) > 0:
        c.followup.total_steps = max(1, int(steps) // 2)
      if int(c.pretrain.lm_steps) > 0:
        c.pretrain.lm_steps = int(steps)
    out[name] = common.lock(c)
  if arms:
    unknown = sorted(set(arms) - set(st.arms))
    if unknown:
      raise ValueError(f"study {study!r} has no arms {unknown}; arms: {list(st.arms)}")
  return out


def training_key(config) -> str:
  """Hash of everything that affects this run's training: the config without ``eval``, ``followup`` (a
  later run) and ``ablation`` (metadata), so arms that differ only there share the run."""
  from configs.showo2.ablations import flatten
  flat = {k: v for k, v in flatten(config).items() if not k.startswith(("eval.", "followup."))}
  return hashlib.sha1(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:10]


def hardware() -> str:
  import jax
  cpu = platform.processor() or platform.machine()
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  dev = jax.devices()[0]
  load = os.getloadavg()[1] if hasattr(os, "getloadavg") else float("nan")
  return (f"{dev.platform.upper()} x{jax.device_count()}; host {cpu}, {os.cpu_count()} cores visible "
          f"(5-min load average {load:.1f} at the end of the arm); jax {jax.__version__}")


# ------------------------------------------------------------------------------------------ training
def _family_trainer(config) -> Callable:
  if config.model_family == "showo":       # Show-o v1 T2I (MTP) recipe: its own data path, the shared Trainer
    from showo_jax.data import pipeline_v1
    return pipeline_v1.train
  if config.model_family.startswith("showo_v1"):
    from showo_jax.eval import v1_toy
    return v1_toy.train
  from showo_jax.train import loop
  return loop.run


def train(config, workdir: str) -> dict:
  """Train (or resume) ``config`` in ``workdir`` unless ``TRAINED`` is there; returns the training record."""
  marker = os.path.join(workdir, "TRAINED")
  if os.path.exists(marker):
    return json.load(open(marker))
  os.makedirs(workdir, exist_ok=True)
  log_path = os.path.join(workdir, "train_invocations.json")
  invocations = json.load(open(log_path)) if os.path.exists(log_path) else []
  t0 = time.time()
  summary = _family_trainer(config)(config, workdir)
  invocations.append({"start_step": int(summary["start_step"]), "final_step": int(summary["final_step"]),
                      "seconds": round(time.time() - t0, 2), "origin": summary.get("origin", "")})
  json.dump(invocations, open(log_path, "w"), indent=1)
  rec = {"workdir": workdir, "total_steps": int(summary["final_step"]),
         "seconds": round(sum(i["seconds"] for i in invocations), 2), "invocations": invocations,
         "curve": loss_curve(workdir)}
  json.dump(rec, open(marker, "w"), indent=1)
  return rec


def loss_curve(workdir: str, max_points: int = 120) -> dict:
  """Subsampled ``{"step": [...], "loss": [...], ...}`` from the train loop's ``metrics.jsonl``."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  rows = {}
  for line in open(path):
    r = json.loads(line)
    rows[int(r["step"])] = r          # a resumed run rewrites steps: keep the last
  steps = sorted(rows)
  stride = max(1, len(steps) // max_points)
  keep = steps[::stride] + ([steps[-1]] if steps and steps[-1] not in steps[::stride] else [])
  keys = ("loss", "loss_ntp", "loss_flow", "loss_mmu")
  out = {"step": keep}
  for k in keys:
    if any(k in rows[s] for s in keep):
      out[k] = [round(float(rows[s][k]), 5) if k in rows[s] else None for s in keep]
  return out


def _export_params(workdir: str, config, path: str, prefix: str = "") -> str:
  """The final parameters of a run as safetensors in our flat names (``prefix`` prepended)."""
  from showo_jax.convert import common as conv
  from showo_jax.eval import runs
  _, model, _ = runs.load_model(config, workdir)
  flat = conv.export_flat(model)
  conv.save_safetensors({prefix + k: v for k, v in flat.items()}, path)
  return path


def pretrain(config, study_dir: str) -> tuple[str, dict]:
  """Tab.13: train the text-only warm-up once per study; returns (safetensors for ``init.path``, record)."""
  from configs.showo2 import ablations as v2
  p = v2.pretrain_config(config)
  wd = os.path.join(study_dir, f"pretrain_lm_{training_key(p)}")
  rec = train(p, wd)
  path = os.path.join(wd, "llm_for_showo2.safetensors")
  if not os.path.exists(path):
    _export_params(wd, p, path + ".tmp", prefix="showo.")
    os.replace(path + ".tmp", path)
  return path, rec


def with_init(config, path: str, params_not_load=()):
  """A copy of ``config`` initialised from ``path`` (safetensors)."""
  from configs import common
  from showo_jax.eval import runs
  c = runs.config_from_json(json.loads(config.to_json_best_effort()))
  c.init.path = path
  c.init.params_not_load = list(params_not_load)
  return common.lock(c)


# ------------------------------------------------------------------------------------------ the sweep
@dataclasses.dataclass
class Sweep:
  study: str
  scale: str
  results_dir: str
  work_dir: str
  train_fn: Callable = train
  eval_fn: Callable | None = None
  steps: int | None = None

  def __post_init__(self):
    self.out = os.path.join(self.results_dir, self.study)
    self.work = os.path.join(self.work_dir, self.study)

  def arm_path(self, arm: str) -> str:
    return os.path.join(self.out, f"{arm}.json")

  def done(self, arm: str) -> bool:
    p = self.arm_path(arm)
    if not os.path.exists(p):
      return False
    try:
      return bool(json.load(open(p)).get("complete"))
    except (OSError, ValueError):
      return False

  def run(self, arms: list[str] | None = None, *, study=None, configs: dict | None = None) -> dict:
    """Run the (selected) arms that are not done, then rewrite the report.

    ``study = (module, Study)`` and ``configs = {"__base__": base, arm: config}`` replace the registry
    lookup (tests run a two-arm study of tiny text-only models this way).
    """
    mod, st = study if study is not None else registry()[self.study]
    if st.needs and self.scale != "full":
      raise RuntimeError(f"study {self.study!r} cannot run yet: needs {st.needs}")
    cfgs = dict(configs) if configs is not None else arm_configs(self.study, self.scale, arms, self.steps)
    base = cfgs.pop("__base__")
    os.makedirs(self.out, exist_ok=True)
    results = {}
    for arm, c in cfgs.items():
      if self.done(arm):
        results[arm] = json.load(open(self.arm_path(arm)))
        print(f"[ablate] {self.study}/{arm}: done (skipped)", flush=True)
        continue
      print(f"[ablate] {self.study}/{arm}: training", flush=True)
      results[arm] = self.run_arm(mod, st, arm, c, base)
      tmp = self.arm_path(arm) + ".tmp"
      with open(tmp, "w") as f:
        f.write(_dumps(results[arm]) + "\n")
      os.replace(tmp, self.arm_path(arm))           # the JSON (complete: true) is the arm's done marker
    self.write_report(mod, st)
    return results

  def run_arm(self, mod, st, arm: str, c, base) -> dict:
    from configs.showo2.ablations import config_diff
    t0 = time.time()
    train_recs = {}
    cfg = c
    if int(c.get("pretrain", {}).get("lm_steps", 0) or 0) > 0:
      path, train_recs["pretrain"] = pretrain(c, self.work)
      from configs.showo2.ablations import NON_LLM_PARAMS
      cfg = with_init(c, path, NON_LLM_PARAMS)
    cache = None
    if _needs_latent_cache(cfg):
      # The cached arm reads ArrayRecords of VAE posteriors: write them (once per data config) first.
      cache = build_latent_cache(cfg, os.path.join(self.work, f"latent_cache_{training_key(cfg)}"))
      cfg = cache.pop("config")
    wd = os.path.join(self.work, f"train_{training_key(cfg)}")
    train_recs["main"] = self.train_fn(cfg, wd)
    eval_cfg, eval_wd = cfg, wd
    if c.get("followup", None) is not None and c.followup.stage:
      f = mod.followup_config(cfg)
      init = os.path.join(wd, "final_params.safetensors")
      if not os.path.exists(init):
        _export_params(wd, cfg, init + ".tmp")
        os.replace(init + ".tmp", init)
      f = with_init(f, init)
      eval_wd = os.path.join(self.work, f"followup_{training_key(f)}")
      train_recs["followup"] = self.train_fn(f, eval_wd)
      eval_cfg = f
    samples = os.path.join(self.out, "samples", arm)
    if self.eval_fn is not None:
      doc = self.eval_fn(eval_cfg, eval_wd, samples, st)
    elif getattr(st, "suite", "toy") == "speed":
      doc = speed_eval(eval_cfg, eval_wd, cache)
    else:
      doc = evaluate(eval_cfg, eval_wd, samples, st)
    diff = config_diff(base, c)
    return {"complete": True, "study": self.study, "table": st.table, "arm": arm, "row": mod.ARMS[arm].row,
            "scale": self.scale, "declared_keys": list(mod.ARMS[arm].keys),
            "diff": {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in diff.items()},
            "train": {k: {kk: vv for kk, vv in v.items() if kk != "workdir"} for k, v in train_recs.items()},
            **({"latent_cache": cache} if cache is not None else {}),
            "eval": doc, "wall_seconds": round(time.time() - t0, 1), "hardware": hardware(),
            "command": f"python -m launch.ablate {self.study} --scale {self.scale}"}

  # -------------------------------------------------------------- report
  def write_report(self, mod, st) -> None:
    from showo_jax.eval import report
    rows, vals, curves = [], {}, {}
    arms = [a for a in st.arms if os.path.exists(self.arm_path(a))]
    if not arms:
      return
    docs = {a: json.load(open(self.arm_path(a))) for a in arms}
    metrics = list(st.metrics)
    for a in arms:
      d = docs[a]
      m = d["eval"]["metrics"]
      vals[a] = {k: m.get(k) for k in metrics}
      steps = sum(t.get("total_steps", 0) for t in d["train"].values())
      secs = sum(t.get("seconds", 0) for t in d["train"].values())
      changed = ", ".join(f"{k}={v[1]}" for k, v in d["diff"].items()) or "(base)"
      rows.append([a, changed, steps, round(secs), round(d["eval"].get("seconds", 0))] + [m.get(k) for k in metrics])
      offset = 0
      for part in ("pretrain", "main", "followup"):      # a follow-up stage continues the step axis
        t = d["train"].get(part)
        if t is None or not t.get("curve", {}).get("loss"):
          continue
        if part != "pretrain":
          curves[a if part == "main" else f"{a} (2nd stage)"] = ([s + offset for s in t["curve"]["step"]],
                                                              t["curve"]["loss"])
          offset += int(t.get("total_steps", 0))
    header = ["arm", "config diff vs base", "train steps", "train s", "eval s"] + metrics
    lines = [f"# {st.table}: {self.study} ({self.scale} scale)", "", st.question, "",
             report.markdown_table(header, rows), "",
             f"Command: `python -m launch.ablate {self.study} --scale {self.scale}`  ",
             f"Hardware: {docs[arms[0]]['hardware']}  ",
             "Paper numbers and the interpretation: see ABLATIONS.md.", ""]
    if getattr(st, "paper", ""):
      lines += ["Paper (from /work/shared/spec):", "", st.paper, ""]
    with open(os.path.join(self.out, "README.md"), "w") as f:
      f.write("\n".join(lines))
    if curves:
      report.line_plot(os.path.join(self.out, "loss_curves.png"), curves, title=f"{self.study}: training loss")
    report.bar_plot(os.path.join(self.out, "metrics.png"), metrics, arms, vals, title=f"{self.study} ({self.scale})")


# ------------------------------------------------------------------------------------------ latent caching
def _needs_latent_cache(config) -> bool:
  """A config that reads cached posteriors from ArrayRecord streams without a path yet (``latent_caching``)."""
  d = config.data
  if d.get("latents", {}).get("source", "") != "cached":
    return False
  return any(int(d[k].batch_size) > 0 and d[k].get("source", "") == "arrayrecord" and not d[k].get("path", "")
             for k in ("t2i", "mmu"))


def build_latent_cache(config, cache_dir: str, batch_size: int = 16) -> dict:
  """Encode the procedural records of every cached image stream with the Wan VAE
  (``showo_jax.tools.cache_latents.encode_records``) into ``cache_dir/<stream>/`` and return
  ``{"config": config reading them, "seconds": ..., "streams": {stream: {records, seconds, bytes}}}``.

  The cache holds exactly the records the on-the-fly arm would draw (``encode_records`` builds its source with
  ``pipeline.stream_source``, as training does). With the same ``num_records`` and shuffle seed, both arms
  see the same records in the same order; only the posterior noise ε comes from a different generator (host
  numpy for cached records, a jax key per step on the fly). A stream directory is renamed into place when complete, so a killed build restarts cleanly.
  """
  import shutil
  from showo_jax.data import sources
  from showo_jax.eval import runs
  from showo_jax.tools import cache_latents
  from configs import common
  c = runs.config_from_json(json.loads(config.to_json_best_effort()))
  n = int(c.data.num_records)
  streams = {}
  for kind in ("t2i", "mmu"):
    scfg = c.data[kind]
    if int(scfg.batch_size) <= 0 or scfg.get("source", "") != "arrayrecord" or scfg.get("path", ""):
      continue
    out = os.path.join(cache_dir, kind)
    meta_path = os.path.join(cache_dir, f"{kind}.json")
    if not (os.path.isdir(out) and os.path.exists(meta_path)):
      enc = runs.config_from_json(json.loads(config.to_json_best_effort()))
      enc.data[kind].source = "procedural"
      tmp = out + ".tmp"
      shutil.rmtree(tmp, ignore_errors=True)
      t0 = time.time()
      paths = sources.write_arrayrecord(
          cache_latents.encode_records(enc, kind, limit=n, batch_size=batch_size), os.path.join(tmp, kind))
      secs = time.time() - t0
      shutil.rmtree(out, ignore_errors=True)
      os.replace(tmp, out)
      size = sum(os.path.getsize(os.path.join(out, os.path.basename(p))) for p in paths)
      json.dump({"records": n, "seconds": round(secs, 2), "bytes": size}, open(meta_path, "w"))
    streams[kind] = json.load(open(meta_path))
    scfg.path = out
  return {"config": common.lock(c), "dir": cache_dir, "streams": streams,
          "seconds": round(sum(v["seconds"] for v in streams.values()), 2)}


def input_seconds(config, steps: int = 20, warmup: int = 3) -> dict:
  """Median seconds per step of the input pipeline alone (host batch + Wan VAE encoding when latents are
  encoded on the fly), and of the encoding by itself; blocked on the result, so asynchronous dispatch does
  not hide the encoder."""
  import jax
  import numpy as np
  from showo_jax.data import pipeline
  data = pipeline.build(config)
  total, encode = [], []
  try:
    for i in range(warmup + steps):
      t0 = time.perf_counter()
      b = data.next_host()
      t1 = time.perf_counter()
      if "pixels" in b:
        z = data.encode(jax.numpy.asarray(b["pixels"]), jax.numpy.asarray(b["batch_index"]))
      else:
        z = jax.numpy.asarray(b["latents"])
      jax.block_until_ready(z)
      t2 = time.perf_counter()
      if i >= warmup:
        total.append(t2 - t0)
        encode.append(t2 - t1 if "pixels" in b else 0.0)
  finally:
    data.close()
  return {"input_s_per_step": float(np.median(total)), "encode_s_per_step": float(np.median(encode))}


def speed_eval(config, workdir: str, cache: dict | None) -> dict:
  """The ``speed`` suite (``latent_caching``): training throughput from the train loop's ``metrics.jsonl``
  (median ``step_time_s`` over the log points after the compiling first step), the input pipeline's own
  cost per step (:func:`input_seconds`), the one-off cache build and the final loss."""
  import numpy as np
  t0 = time.time()
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  step_times = [float(r["step_time_s"]) for r in rows if "step_time_s" in r]
  s_per_step = float(np.median(step_times)) if step_times else float("nan")
  inp = input_seconds(config)
  last = max(rows, key=lambda r: int(r["step"]))
  metrics = {"steps_per_s": 1.0 / s_per_step, "s_per_step": s_per_step, **inp,
             "cache_build_s": float(cache["seconds"]) if cache else 0.0,
             "final_loss": float(last.get("loss", float("nan")))}
  return {"metrics": metrics, "details": {"step_time_s": step_times, "log_points": len(step_times)},
          "seconds": round(time.time() - t0, 2)}


def evaluate(config, workdir: str, samples_dir: str, study) -> dict:
  """Evaluate the trained arm with the toy suite, under the arm's own eval settings."""
  from showo_jax.eval import runs, suites
  run = runs.load_run(workdir)
  run.config = config
  return suites.run_suite(getattr(study, "suite", "toy"), run, out_dir=samples_dir)


def _jsonable(v):
  if isinstance(v, tuple):
    return list(v)
  return v


def _dumps(doc) -> str:
  from showo_jax.eval import suites
  return suites.dumps(doc)


def main(argv):
  import jax
  if FLAGS.list:
    for name, (mod, st) in registry().items():
      flag = f"  [needs: {st.needs}]" if st.needs else ""
      print(f"{name} ({st.table}){flag}\n  " + "\n  ".join(f"{a}: {mod.ARMS[a].row}" for a in st.arms))
    return
  if FLAGS.calibrate:
    from showo_jax.eval import suites
    doc = {f"{s}px": suites.calibration(s) for s in (32, 64)}
    os.makedirs(FLAGS.results, exist_ok=True)
    with open(os.path.join(FLAGS.results, "calibration.json"), "w") as f:
      f.write(suites.dumps(doc) + "\n")
    print(suites.dumps(doc))
    return
  if len(argv) != 2:
    raise app.UsageError("usage: python -m launch.ablate STUDY [--scale tiny|small|full] [--arms a,b]")
  if FLAGS.compile_cache:
    jax.config.update("jax_compilation_cache_dir", FLAGS.compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  import logging
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)          # Orbax/grain chatter
  logging.getLogger("showo_jax").setLevel(logging.INFO)
  sweep = Sweep(argv[1], FLAGS.scale, FLAGS.results, FLAGS.work, steps=FLAGS.steps)
  res = sweep.run(FLAGS.arms or None)
  for arm, d in res.items():
    print(arm, json.dumps({k: v for k, v in d["eval"]["metrics"].items()}, default=str)[:400])


if __name__ == "__main__":
  define_flags()
  app.run(main)
