"""Compile the real train step for a target pod from this (CPU-only) machine and report memory and FLOPs.

    python -m launch.aot_compile --config configs/showo2/stage2b.py:size=7b,target=v5p-128 [--json out.json]
    python -m launch.aot_compile --config configs/showo2/stage2.py:size=7b --topology v5p-128 \\
        [--mesh data=1,fsdp=64,tensor=1] [--rules fsdp] [--remat full] [--attention splash] [--json out.json]

With ``target=`` (Show-o2 stage configs: ``configs/showo2/targets.py``) the config carries the shipped preset
for that target (mesh, rules, remat, attention) and ``--topology`` defaults to it: the first form compiles
exactly what ``launch/train.py`` would run on that pod.

The step is the training loop's own (``train/step.py`` via ``train/state.py``), built abstractly: the model
comes from ``nnx.eval_shape``, the state and batch are ``ShapeDtypeStruct``s with the trainer's shardings, so
nothing of real size is allocated. The config decides sizes, dtypes, remat policy, scanned layers, frozen
set and optimizer; ``--remat``, ``--attention``, ``--rules`` and ``--mesh`` override it (any other key with
``--config.x.y=...``). Batch: the config's per-stream batch sizes are taken as rows per data-parallel
device (the reference's per-GPU ``batch_size``), so the global batch is ``rows × data × fsdp``
(``--batch global`` uses the config's rows as the global batch instead).

Targets (``--topology``; :data:`TARGETS`): TPU slices via ``jax.experimental.topologies.get_topology_desc``
with ``libtpu`` (the ``[tpu]`` extra; the version matching jax 0.10.2 is ``libtpu==0.0.42.*``) — v4-32,
v5e-256, v5p-128, v5p-256, v6e-256, ``2xv6e-256`` (two slices over DCN: ``data`` spans the slices) and
small ones for tests. The mesh is ``mesh_utils.create_device_mesh(..., allow_split_physical_axes=True)``
(``create_hybrid_device_mesh`` for multislice).

GPU targets (``8xh100`` one node, ``32xh100`` four nodes): a compile-only CUDA topology from the CUDA PJRT
plugin (``jax-cuda12-plugin`` + ``jax-cuda12-pjrt`` of the same version as jax: the ``[gpu_aot]`` extra; or a
directory holding them in ``SHOWO_JAX_CUDA_PLUGIN_DIR``), described by the target file shipped in
``launch/targets/h100_sxm_80gb.txtpb`` (``GpuTargetConfigProto``: SM 9.0, 132 SMs, 80 GiB) and the
``topology`` option ``"1x<nodes>x8"``. No GPU, driver or CUDA toolkit is needed. Without the plugin the tool
falls back to compiling the same SPMD program for N virtual CPU devices and marks the row ``proxy``
(argument/output bytes exact, temporaries the CPU scheduler's).

Output (per device): argument / output / alias / temporary / generated-code bytes, the total against the
chip's HBM (fits or not), XLA's FLOPs per step (cost analysis of the partitioned module, per device), the
model FLOPs of ``showo_jax.flops`` (global) and compile time. ``--render JSON...`` turns saved results
into the markdown table of ``docs/aot_table.md``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Target:
  """A compile target: TPU slice(s) (libtpu topology) or an N-GPU system (CPU proxy on a CPU host)."""
  kind: str                       # "tpu" | "gpu"
  devices: int
  hbm_bytes: int                  # per device
  topology: str = ""              # libtpu topology name
  chip_config: str = "default"
  host_bounds: tuple = (2, 2, 1)
  wrap: tuple = (False, False, False)
  slices: int = 1
  note: str = ""


# Slice shapes: chips per slice and physical topology per public TPU naming (v4/v5p names count TensorCores,
# two per megacore chip); HBM per chip from the vendor data sheets.
TARGETS: dict[str, Target] = {
    "v5e-4": Target("tpu", 4, 16 * GiB, "v5e:2x2"),
    "v5e-8": Target("tpu", 8, 16 * GiB, "v5e:2x4"),
    "2xv5e-4": Target("tpu", 8, 16 * GiB, "v5e:2x2", slices=2, note="two 2×2 slices over DCN (tests)"),
    "v4-8": Target("tpu", 4, 32 * GiB, "v4:2x2x1", "megacore"),
    "v4-32": Target("tpu", 16, 32 * GiB, "v4:2x2x4", "megacore"),
    "v5e-256": Target("tpu", 256, 16 * GiB, "v5e:16x16", wrap=(True, True, False)),
    "v5p-8": Target("tpu", 4, 95 * GiB, "v5:2x2x1", "megacore"),
    "v5p-128": Target("tpu", 64, 95 * GiB, "v5:4x4x4", "megacore", wrap=(True, True, True)),
    "v5p-256": Target("tpu", 128, 95 * GiB, "v5:4x4x8", "megacore", wrap=(True, True, True)),
    "v6e-8": Target("tpu", 8, 32 * GiB, "v6e:2x4"),
    "v6e-256": Target("tpu", 256, 32 * GiB, "v6e:16x16", wrap=(True, True, False)),
    "2xv6e-256": Target("tpu", 512, 32 * GiB, "v6e:16x16", wrap=(True, True, False), slices=2),
    "8xh100": Target("gpu", 8, 84942979072, "1x1x8", note="one 8×H100 80GB node"),
    "32xh100": Target("gpu", 32, 84942979072, "1x4x8", note="four 8×H100 80GB nodes"),
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:args]", lock_config=True)
_TOPOLOGY = flags.DEFINE_enum("topology", None, sorted(TARGETS),
                              "compile target (default: the config's ``target`` preset)")
_MESH = flags.DEFINE_string("mesh", "", "data=..,fsdp=..,tensor=.. (default: the config's mesh; -1 = rest)")
_RULES = flags.DEFINE_string("rules", "", "sharding rule preset (default: the config's)")
_REMAT = flags.DEFINE_string("remat", "", "remat policy override (models/remat.py POLICIES)")
_ATTN = flags.DEFINE_string("attention", "auto", "attention impl override: auto (the config's when it has a "
                            "target preset; else splash on TPU targets, the config's otherwise) | xla | splash | "
                            "tokamax | cudnn | config")
_BATCH = flags.DEFINE_enum("batch", "per_device", ["per_device", "global"],
                           "config batch sizes are rows per data-parallel device, or the global batch")
_JSON = flags.DEFINE_string("json", "", "write the report here as JSON")
_RENDER = flags.DEFINE_multi_string("render", [], "render these JSON reports as markdown and exit (more JSON "
                                    "files may follow as plain arguments: --render docs/aot/*.json)")
_RENDER_OUT = flags.DEFINE_string("render_out", "", "markdown output file for --render (default stdout)")


# --------------------------------------------------------------------------------------------- devices
GPU_TARGET_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets", "h100_sxm_80gb.txtpb")


def cuda_plugin_available() -> bool:
  """Whether the CUDA PJRT plugin can be imported (``SHOWO_JAX_CUDA_PLUGIN_DIR`` is put on ``sys.path``)."""
  import importlib.util
  extra = os.environ.get("SHOWO_JAX_CUDA_PLUGIN_DIR")
  if extra and extra not in sys.path:
    sys.path.insert(0, extra)
  try:
    return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
  except ModuleNotFoundError:   # no jax_plugins namespace at all
    return False


def _prepare_env(target: Target) -> None:
  """Must run before jax initialises: a GPU proxy needs N CPU devices; libtpu must not grab the lockfile."""
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")   # another process may hold /tmp/libtpu_lockfile
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # compile-only: no CUDA runtime to check
  os.environ["JAX_PLATFORMS"] = "cpu"
  if target.kind == "gpu" and not cuda_plugin_available():
    flags_ = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    os.environ["XLA_FLAGS"] = " ".join(flags_ + [f"--xla_force_host_platform_device_count={target.devices}"])


def target_devices(target: Target):
  import jax
  if target.kind == "gpu" and cuda_plugin_available():
    from jax._src import xla_bridge
    with open(GPU_TARGET_FILE) as f:
      spec = f.read()
    topo = xla_bridge.make_pjrt_topology("cuda", "", target_config=spec, topology=target.topology)
    devs = topo._make_compile_only_devices()
    if len(devs) != target.devices:
      raise RuntimeError(f"{target.topology}: expected {target.devices} GPUs, the plugin gave {len(devs)}")
    return devs
  if target.kind == "gpu":
    devs = jax.devices("cpu")
    if len(devs) < target.devices:
      raise RuntimeError(f"GPU proxy needs {target.devices} CPU devices, have {len(devs)} (jax initialised early?)")
    return devs[:target.devices]
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")   # only read when libtpu first loads
  from jax.experimental import topologies
  desc = topologies.get_topology_desc(target.topology, "tpu", chip_config_name=target.chip_config,
                                      chips_per_host_bounds=target.host_bounds, num_slices=target.slices,
                                      wrap=target.wrap)
  if len(desc.devices) != target.devices:
    raise RuntimeError(f"{target.topology}: expected {target.devices} devices, libtpu gave {len(desc.devices)}")
  return desc.devices


def parse_mesh(text: str, default: dict, n: int) -> dict:
  sizes = dict(default)
  for item in filter(None, (s.strip() for s in text.split(","))):
    k, _, v = item.partition("=")
    if k not in ("data", "fsdp", "tensor"):
      raise ValueError(f"--mesh: unknown axis {k!r}")
    sizes[k] = int(v)
  known = 1
  for k, v in sizes.items():
    known *= v if v != -1 else 1
  rest = [k for k, v in sizes.items() if v == -1]
  if len(rest) > 1:
    raise ValueError("at most one mesh axis may be -1")
  if rest:
    sizes[rest[0]] = n // known
  if sizes["data"] * sizes["fsdp"] * sizes["tensor"] != n:
    raise ValueError(f"mesh {sizes} does not cover {n} devices")
  return sizes


def build_mesh(target: Target, devices, sizes: dict):
  import numpy as np
  from jax.experimental import mesh_utils
  from showo_jax import compat
  shape = (sizes["data"], sizes["fsdp"], sizes["tensor"])
  if target.kind == "tpu" and target.slices > 1:
    if sizes["data"] % target.slices:
      raise ValueError(f"multislice: data={sizes['data']} must be a multiple of the {target.slices} slices")
    ici = (sizes["data"] // target.slices, sizes["fsdp"], sizes["tensor"])
    dcn = (target.slices, 1, 1)
    arr = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, allow_split_physical_axes=True)
  elif target.kind == "tpu":
    arr = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
  else:
    arr = np.asarray(devices).reshape(shape)
  return compat.make_mesh(shape, ("data", "fsdp", "tensor"), devices=list(arr.flat))


# --------------------------------------------------------------------------------------------- the step
def batch_shapes(config, model_cfg, global_rows: int) -> dict:
  """Global batch ``ShapeDtypeStruct``s of the configured pipeline (``data/pipeline.py:build``'s table)."""
  import jax
  import jax.numpy as jnp
  from showo_jax.data import pipeline
  d = config.data
  L = int(d.max_seq_length)
  shapes = {"text_tokens": ((global_rows, L), jnp.int32), "text_labels": ((global_rows, L), jnp.int32),
            "image_masks": ((global_rows, L), jnp.bool_), "data_type": ((global_rows,), jnp.int32),
            "batch_index": ((global_rows,), jnp.int32)}
  if config.model_family != "lm":
    kinds = [k for k in pipeline.STREAMS if k in d and d[k].batch_size > 0]
    geom = pipeline.geometry_of(d, getattr(model_cfg, "patch_size", 2), getattr(model_cfg, "image_latent_dim", 16))
    m = pipeline._num_slots(d, kinds)
    shapes["modality_positions"] = ((global_rows, m, 2), jnp.int32)
    shapes["latents"] = ((global_rows * m,) + geom.latent_shape("video" in kinds), jnp.float32)
  return {k: jax.ShapeDtypeStruct(s, t) for k, (s, t) in shapes.items()}


def config_rows(config) -> int:
  from showo_jax.data import pipeline
  d = config.data
  sizes = [int(d[k].batch_size) for k in pipeline.STREAMS if k in d and d[k].batch_size > 0]
  return sum(sizes) if d.get("mixture", "concat") == "concat" else sizes[0]


def aot_row_types(config, rows_scale: int) -> tuple[str, ...] | None:
  """The static row layout the Trainer hands the loss (``showo_jax/rows.py``): concat mixture and
  ``loss.row_split = "on"``; each stream's rows scaled by ``rows_scale`` (per-device batch semantics)."""
  from showo_jax import rows as rows_lib
  from showo_jax.data import pipeline
  d = config.data
  mode = (config.get("loss", None) or {}).get("row_split", "on")
  if config.model_family != "showo2" or d.get("mixture", "concat") != "concat":
    return rows_lib.split_layout(None, mode)
  return rows_lib.split_layout(rows_lib.concat_layout(
      [(k, int(d[k].batch_size) * rows_scale) for k in pipeline.STREAMS if k in d and d[k].batch_size > 0]), mode)


def compile_step(config, topology: str, sizes: dict | None = None, rules_name: str | None = None,
                 batch_mode: str = "per_device", devices=None, config_name: str = "") -> dict:
  """Lower and compile ``config``'s train step for ``TARGETS[topology]``; returns the report dict.

  ``sizes`` is the mesh (``{"data", "fsdp", "tensor"}``; default the config's, ``-1`` resolved), ``rules_name``
  the rule preset (default the config's). The caller must have prepared the environment (:func:`_prepare_env`)
  before jax initialised when the target is a GPU proxy."""
  import jax
  from flax import nnx
  from showo_jax import flops as flops_lib
  from showo_jax import sharding
  from showo_jax.train import optim, tasks
  from showo_jax.train import state as state_lib
  from showo_jax.train import step as step_lib

  target = TARGETS[topology]
  devices = target_devices(target) if devices is None else devices
  m = config.mesh
  sizes = parse_mesh("", dict(sizes or {"data": m.data, "fsdp": m.fsdp, "tensor": m.tensor}), len(devices))
  rules_name = rules_name or m.rules
  t0 = time.perf_counter()
  mesh = build_mesh(target, devices, sizes)
  rules = sharding.get_rules(rules_name)
  task = tasks.get(config.model_family)
  model_cfg = task.model_config(config.model)
  with sharding.use_mesh(mesh, rules):
    abstract = nnx.eval_shape(lambda: task.build(model_cfg, nnx.Rngs(config.seed)))
    layout = state_lib.Layout.of(abstract, optim.frozen_filter(config.trainable))
  total_steps = int(config.total_steps) if config.total_steps > 0 else 10_000
  opt = optim.build(config.optim, list(layout.templates["params"]), total_steps)
  ema = bool(config.optim.get("ema_decay", 0.0))
  state_sh = state_lib.state_shardings(layout, opt.tx, mesh, rules, ema)
  state_abs = state_lib.with_shardings(state_lib.abstract_state(layout, opt.tx, ema), state_sh)
  rows = config_rows(config)
  dp = sizes["data"] * sizes["fsdp"]
  global_rows = rows * dp if batch_mode == "per_device" else rows
  shapes = batch_shapes(config, model_cfg, global_rows)
  batch_sh = {k: sharding.batch_sharding(mesh, len(v.shape), rules) for k, v in shapes.items()}
  batch_abs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh[k]) for k, v in shapes.items()}
  step_fn = step_lib.make_train_step(layout, task, opt.tx, config.get("loss", None), opt.schedules,
                                     config.optim.ema_decay if ema else None,
                                     row_types=aot_row_types(config, dp if batch_mode == "per_device" else 1))
  jitted = step_lib.jit_train_step(step_fn, state_sh, batch_sh)
  with sharding.use_mesh(mesh, rules):
    lowered = jitted.lower(state_abs, batch_abs)
  t_lower = time.perf_counter() - t0
  t1 = time.perf_counter()
  from jax._src import config as jax_config
  # A compile-only executable cannot be stored in / read from the persistent cache (no client to load it).
  with jax_config.enable_compilation_cache(False):
    compiled = lowered.compile()
  t_compile = time.perf_counter() - t1

  mem = compiled.memory_analysis()
  get = lambda name: int(getattr(mem, name, 0) or 0)
  arg, out, alias = get("argument_size_in_bytes"), get("output_size_in_bytes"), get("alias_size_in_bytes")
  temp, code = get("temp_size_in_bytes"), get("generated_code_size_in_bytes")
  total = arg + out - alias + temp + code
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = float((cost or {}).get("flops", 0.0))
  model_flops = 0.0
  if config.model_family in ("lm", "showo2"):
    model_flops = float(flops_lib.train_step_flops(config.model_family, model_cfg, shapes))
  n_params = layout.num_params()
  return dict(
      config=config_name, topology=topology, kind=target.kind, preset=str(config.get("target", "") or ""),
      proxy=target.kind == "gpu" and devices[0].platform == "cpu",
      devices=target.devices, device_kind=str(getattr(devices[0], "device_kind", "")),
      mesh=sizes, rules=rules_name, remat=config.model.remat_policy, attention=config.model.attention_impl,
      scan_layers=bool(config.model.scan_layers), dtype=config.model.dtype, param_dtype=config.model.param_dtype,
      row_split=aot_row_types(config, 1) is not None,
      global_batch=global_rows, rows_per_device=global_rows / dp, seq_len=int(config.data.max_seq_length),
      params=n_params, trainable=layout.num_params("params"), frozen=layout.num_params("frozen"),
      bytes=dict(argument=arg, output=out, alias=alias, temp=temp, code=code, total=total),
      hbm=target.hbm_bytes, fits=total <= target.hbm_bytes, hbm_fraction=total / target.hbm_bytes,
      xla_flops_per_device=xla_flops, model_flops_global=model_flops,
      lower_s=round(t_lower, 1), compile_s=round(t_compile, 1),
  )


def _config_name() -> str:
  for a in sys.argv:
    if a.startswith("--config="):
      return a.split("=", 1)[1]
  if "--config" in sys.argv:
    return sys.argv[sys.argv.index("--config") + 1]
  return ""


# --------------------------------------------------------------------------------------------- output
def format_report(r: dict) -> str:
  b = r["bytes"]
  g = lambda x: f"{x / GiB:.2f} GiB"
  lines = [
      f"config      {r['config']}  ({r['params'] / 1e9:.2f} B params: {r['trainable'] / 1e9:.2f} B trainable)",
      f"target      {r['topology']}: {r['devices']} × {r['device_kind'] or r['kind']}"
      + ("  [CPU proxy: install the CUDA PJRT plugin (the [gpu_aot] extra) for a real GPU compile]"
         if r["proxy"] else ""),
      f"mesh        data={r['mesh']['data']} fsdp={r['mesh']['fsdp']} tensor={r['mesh']['tensor']}  rules={r['rules']}"
      f"  remat={r['remat']}  attention={r['attention']}  scan={r['scan_layers']}  {r['dtype']}/{r['param_dtype']}",
      f"batch       {r['global_batch']} rows × {r['seq_len']} tokens ({r['rows_per_device']:g} rows per data-parallel device)",
      f"per device  argument {g(b['argument'])}, output {g(b['output'])} (aliased {g(b['alias'])}), "
      f"temp {g(b['temp'])}, code {b['code'] / 2**20:.1f} MiB",
      f"total       {g(b['total'])} of {g(r['hbm'])} HBM ({100 * r['hbm_fraction']:.0f} %): "
      + ("FITS" if r["fits"] else "DOES NOT FIT"),
      f"FLOPs/step  XLA {r['xla_flops_per_device']:.3e} per device; model {r['model_flops_global']:.3e} global "
      f"({r['model_flops_global'] / max(1, r['devices']):.3e} per device)",
      f"time        lower {r['lower_s']} s, compile {r['compile_s']} s",
  ]
  return "\n".join(lines)


def label_of(config_name: str) -> str:
  """``configs/showo2/stage2b.py:size=7b`` → ``showo2 7b stage2b``."""
  path, _, args = config_name.partition(":")
  parts = path.replace(".py", "").split("/")
  family = parts[-2] if len(parts) >= 2 and parts[-2] != "configs" else ""
  stage = parts[-1]
  size = dict(a.partition("=")[::2] for a in args.split(",") if "=" in a).get("size", "")
  return " ".join(x for x in (family, size, stage) if x)


def render_table(reports: list[dict]) -> str:
  head = ("| model / stage | target | mesh (data×fsdp×tensor) | rules | remat | attention | rows/dev × L "
          "| args GiB | temp GiB | total GiB / HBM | fits | model TFLOP/dev/step | XLA TFLOP/dev/step | compile s |")
  sep = "|" + "---|" * 14
  out = [head, sep]
  order = {name: i for i, name in enumerate(TARGETS)}
  reports = sorted(reports, key=lambda r: (r.get("label") or label_of(r["config"]), order.get(r["topology"], 99),
                                           r["remat"], r["mesh"]["data"]))
  for r in reports:
    b = r["bytes"]
    m = r["mesh"]
    tgt = r["topology"] + (" (CPU proxy)" if r.get("proxy") else "")
    xla = f"{r['xla_flops_per_device'] / 1e12:.1f}" if r["xla_flops_per_device"] else "n/a"
    out.append(
        f"| {r.get('label') or label_of(r['config'])} | {tgt} | {m['data']}×{m['fsdp']}×{m['tensor']} | {r['rules']} "
        f"| {r['remat']} | {r['attention']} | {r['rows_per_device']:g} × {r['seq_len']} "
        f"| {b['argument'] / GiB:.1f} | {b['temp'] / GiB:.1f} | {b['total'] / GiB:.1f} / {r['hbm'] / GiB:.0f} "
        f"| {'yes' if r['fits'] else '**no**'} | {r['model_flops_global'] / r['devices'] / 1e12:.0f} | {xla} "
        f"| {r['compile_s']:.0f} |")
  return "\n".join(out) + "\n"


def render_presets(reports: dict[str, dict]) -> str:
  """The shipped ``configs/showo2/targets.py`` presets with the compile that proves each (``reports``: JSON
  file name → report). A preset whose report is missing or was compiled with other settings is flagged."""
  from configs.showo2 import targets
  head = ("| target | size | stages | `config.mesh` data×fsdp×tensor · rules | `remat_policy` | `attention_impl` "
          "| total GiB / HBM | fits | proof (`docs/aot/`) |")
  out = [head, "|" + "---|" * 9]
  for (tgt, size, kind), p in targets.TARGET_PRESETS.items():
    r = reports.get(p.proof)
    if r is None:
      mem, fits = "not compiled", "?"
    else:
      m = r["mesh"]
      same = ((m["data"], m["fsdp"], m["tensor"]) == (p.data, p.fsdp, p.tensor) and r["rules"] == p.rules
              and r["remat"] == p.remat and r["attention"] == p.attention and r["topology"] == tgt)
      mem = f"{r['bytes']['total'] / GiB:.1f} / {r['hbm'] / GiB:.0f}" + ("" if same else " (**other settings**)")
      fits = "yes" if r["fits"] else "**no**"
    stages = {"stage1": "1a, 1b", "stage2": "2a, 2b, 2c"}[kind]
    out.append(f"| {tgt} | {size} | {stages} | {p.data}×{p.fsdp}×{p.tensor} · {p.rules} | {p.remat} | {p.attention} "
               f"| {mem} | {fits} | {p.proof} |")
  return "\n".join(out) + "\n"


def splice(doc: str, name: str, text: str) -> str:
  """Replace the block between ``<!-- aot:NAME -->`` and ``<!-- /aot:NAME -->`` in ``doc`` with ``text``."""
  start, end = f"<!-- aot:{name} -->", f"<!-- /aot:{name} -->"
  i, j = doc.find(start), doc.find(end)
  if i < 0 or j < i:
    raise ValueError(f"no {start} ... {end} block")
  return doc[:i + len(start)] + "\n" + text + doc[j:]


# --------------------------------------------------------------------------------------------- main
def resolve_target(config, topology: str | None, mesh_text: str = "", attention: str = "auto") -> tuple[str, str]:
  """``(topology, attention impl or "config")`` from the flags and the config's ``target`` preset.

  Without ``--topology`` the preset's target is compiled; a preset for another target than ``--topology``
  is refused unless ``--mesh`` replaces its mesh. ``auto`` attention keeps a preset's kernel, else Splash on
  TPU and the config's on GPU."""
  preset = str(config.get("target", "") or "")
  topology = topology or preset
  if not topology:
    raise ValueError("--topology is required unless the config names a target (e.g. ...:size=7b,target=v5p-128)")
  if topology not in TARGETS:
    raise ValueError(f"unknown topology {topology!r}; known: {sorted(TARGETS)}")
  if preset and topology != preset and not mesh_text:
    raise ValueError(f"the config's preset is for {preset}, --topology is {topology}: pass --mesh as well")
  if attention == "auto":
    attention = "config" if preset or TARGETS[topology].kind == "gpu" else "splash"
  return topology, attention


def main(argv):
  extra = [a for a in argv[1:] if a.endswith(".json")]
  if len(extra) != len(argv[1:]):
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _RENDER.value or extra:
    reports = {}
    for path in list(_RENDER.value) + extra:   # --render a.json b.json (shell globs) works too
      with open(path) as f:
        reports[os.path.basename(path)] = json.load(f)
    results, presets = render_table(list(reports.values())), render_presets(reports)
    out = _RENDER_OUT.value
    if out and os.path.exists(out) and "<!-- aot:results -->" in open(out).read():
      # a document with marked blocks (docs/aot_table.md): regenerate the tables, keep the prose
      doc = splice(splice(open(out).read(), "results", results), "presets", presets)
    else:
      doc = "## Shipped presets\n\n" + presets + "\n## Results\n\n" + results
    if out:
      with open(out, "w") as f:
        f.write(doc)
    else:
      print(doc)
    return
  if _CONFIG.value is None:
    raise app.UsageError("--config is required (or --render)")
  config = _CONFIG.value
  try:
    topology, attn = resolve_target(config, _TOPOLOGY.value, _MESH.value, _ATTN.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  target = TARGETS[topology]
  _prepare_env(target)
  with config.unlocked():
    if _REMAT.value:
      config.model.remat_policy = _REMAT.value
    if attn != "config":
      config.model.attention_impl = attn
    if _RULES.value:
      config.mesh.rules = _RULES.value
  devices = target_devices(target)
  m = config.mesh
  sizes = parse_mesh(_MESH.value, {"data": m.data, "fsdp": m.fsdp, "tensor": m.tensor}, len(devices))
  report = compile_step(config, topology, sizes, config.mesh.rules, _BATCH.value, devices=devices,
                        config_name=_config_name())
  print(format_report(report))
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  app.run(main)
