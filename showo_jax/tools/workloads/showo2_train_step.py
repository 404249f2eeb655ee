"""``showo2_train_step``: one full training step of the official benchmark's small Show-o2.

Same model and batch as ``shared/bench/official_cpu.json`` → ``workloads.showo2_train_step`` (and our
``showo2_forward`` workload): 4 rows × 256 tokens (T2I, T2I, MMU, MMU), 16×16×16 latents, per-row flow
times (understanding rows ``t = 1``), ``0.2·NTP + 1.0·flow``, AdamW (lr 1e-4, β=(0.9, 0.999), eps 1e-8,
wd 0) with clipping at 1.0, every parameter trainable, float32. It runs the training stack itself
(``train.state`` layout, ``train.optim``, ``train.step`` jitted with state donation, ``train.tasks`` loss),
not a re-implementation, with the batch's static row layout (T2I, T2I, MMU, MMU: the flow head runs on the
T2I rows, the LM head on the MMU rows, as ``Trainer`` does for a concat mixture on one device; sub-workload
``no_row_split`` runs both heads on every row, like the reference). ``model_flops_per_step`` counts the
reference's work (every head on every row), so with the row split the MFU is an effective one.
``extra`` reports tokens/s, samples/s, model TFLOP/s and MFU (``showo_jax.flops``;
on CPU against a nominal peak, see ``flops.peak_flops``).

Main timing: the LLM also runs **packed** (``showo_jax/packing.py``: the trailing pads nothing reads are
dropped, 1024 → 736 positions in one 768-token row; planning it on the host is inside the timed call), as the
Trainer does with ``data.pack_len``. Sub-workloads: ``unpacked`` (row split, padded LLM) and ``no_row_split``
(padded, both heads on every row: the reference's work).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from showo_jax import flops as flops_lib
from showo_jax import masks, packing, sharding
from showo_jax.tools.bench import Workload
from showo_jax.tools.workloads import showo2_forward as fw
from showo_jax.train import optim, tasks
from showo_jax.train import state as state_lib
from showo_jax.train import step as step_lib

IMG_PAD, BOI, EOI, BOS = 2043, 2040, 2041, 2038


def batch() -> dict:
  tokens, mp = fw.batch_layout()
  labels = np.full_like(tokens, -100)
  for i, kind in enumerate(fw.ROWS):
    if kind == "mmu":  # captioning labels (spec §4.2): [bos][boi] -100*(n+1) [eoi] caption [eos], pad -100
      keep = (tokens[i] != IMG_PAD) & (tokens[i] != 2042)
      labels[i] = np.where(keep, tokens[i], -100)
  rng = np.random.default_rng(1)
  return {"text_tokens": tokens, "text_labels": labels, "image_masks": tokens == IMG_PAD,
          "modality_positions": mp, "data_type": np.asarray([0, 0, 1, 1], np.int32),
          "latents": rng.standard_normal((fw.BATCH, 16, 16, 16)).astype(np.float32)}


def build(name: str = "showo2_train_step") -> Workload:
  del name
  cfg = fw.bench_config()
  task = tasks.get("showo2")
  abstract = nnx.eval_shape(lambda: task.build(cfg, nnx.Rngs(0)))
  layout = state_lib.Layout.of(abstract, lambda n: False)
  ocfg = mlc.ConfigDict(dict(name="adamw", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
                             groups={}, ema_decay=0.0,
                             schedule=dict(name="constant", warmup_steps=0, warmup_ratio=0.0)))
  opt = optim.build(ocfg, list(layout.templates["params"]), 1000)
  loss_cfg = mlc.ConfigDict(dict(ntp_coeff=0.2, flow_coeff=1.0, und_max_t0=1.0, transport_seq_len=65,
                                 clean_prefix_prob=0.0))
  mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  shardings = state_lib.state_shardings(layout, opt.tx, mesh, "fsdp", ema=False)
  model = task.build(cfg, nnx.Rngs(0))
  params, frozen, other = state_lib.model_to_flat(model, layout)
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen, other=other,
                               opt_state=opt.tx.init(params), rng=jax.random.key_data(jax.random.key(0)))
  state = jax.device_put(state, shardings)
  host = batch()
  gb = sharding.shard_batch(host, mesh, "fsdp")
  bsh = {k: sharding.batch_sharding(mesh, np.ndim(v), "fsdp") for k, v in host.items()}
  holder = {"state": state}

  spec = masks.omni(jnp.asarray(host["modality_positions"]), fw.SEQ_LEN)
  ranges = np.asarray(spec.k_start), np.asarray(spec.k_end)

  def runner(row_types, pack=False):
    step = step_lib.jit_train_step(step_lib.make_train_step(layout, task, opt.tx, loss_cfg, opt.schedules,
                                                            row_types=row_types), shardings,
                                   {**bsh, "llm_pack": sharding.batch_sharding(mesh, 2, "fsdp")} if pack else bsh)

    def run():
      b = gb
      if pack:   # host side, as the data pipeline plans it (the omni ranges come with the batch there too)
        b = {**gb, "llm_pack": packing.pack_llm(host["text_tokens"], host["text_labels"], *ranges,
                                                pad_id=fw.PAD)}
      holder["state"], m = step(holder["state"], b)
      jax.block_until_ready(m["loss"])
    return run

  n_params = layout.num_params()
  fl = flops_lib.train_step_flops("showo2", cfg, host)
  peak = flops_lib.peak_flops()
  tokens = fw.BATCH * fw.SEQ_LEN

  def extra(median_s: float) -> dict:
    out = {"tokens_per_s": tokens / median_s, "samples_per_s": fw.BATCH / median_s,
           "model_flops_per_step": fl, "model_tflops_per_s": fl / median_s / 1e12}
    if peak:
      out.update(mfu=fl / median_s / peak, peak_flops_per_device=peak)
    return out

  shapes = {"batch": fw.BATCH, "seq_len": fw.SEQ_LEN, "rows": list(fw.ROWS), "text_lens": list(fw.TEXT_LENS),
            "latents": [fw.BATCH, 16, 16, 16], "params": n_params, "loss": "0.2*ntp + 1.0*flow",
            "optimizer": "adamw+clip1.0", "row_split": True}
  shapes["llm_pack"] = list(packing.pack_llm(host["text_tokens"], host["text_labels"], *ranges,
                                             pad_id=fw.PAD).index.shape)
  return Workload(run=runner(fw.ROWS, pack=True), shapes=shapes, extra=extra,
                  sub={"unpacked": Workload(run=runner(fw.ROWS), shapes={**shapes, "llm_pack": None}),
                       "no_row_split": Workload(run=runner(None), shapes={**shapes, "row_split": False,
                                                                          "llm_pack": None})})
