"""Show-o (v1) understanding at toy scale: the data, task and evaluation of the v1 representation ablations.

No v1 training recipe exists in ``configs/showo/`` and the shared pipeline builds Show-o2 rows only, so this
module supplies what ``configs/showo/ablations.py`` needs, on top of the shared pieces: the model
(``models/showo.py``), the v1 MMU mask (``prompting_v1.mmu_mask``), MMU decoding (``maskgit.mmu_generate``),
the loss (``losses.ntp_loss``, i.e. the shifted ``loss_mmu`` of ``maskgit.showo_losses``) and the shared
:class:`~showo_jax.train.loop.Trainer` (checkpoints, resume, metrics), fed by :class:`V1Data`.

Rows (one layout for every representation, so only the visual input differs between arms)::

  <|mmu|> <|soi|> v_1 … v_N <|eoi|> <|sot|> question answer <|eot|> [PAD] …

``v_i`` are MAGVIT-v2 code tokens (``discrete_magvit``: ``image_token_offset + code``) or placeholders whose
embeddings are replaced by ``mm_projector(features)`` (``continuous_magvit``: the encoder's pre-quantisation
``z``; ``clip_vit``: ViT features). Labels cover ``answer <|eot|>`` only (LLaVA-style). The frozen encoders
live in the data path (:class:`Encoders`): random-initialised at toy scale (seeds in the config; see
``configs/showo/ablations.py`` for what that means), converted weights at full scale.

Importing this module registers the task ``"showo_v1_und"`` in ``train.tasks.TASKS``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax import losses
from showo_jax.data import prompting_v1
from showo_jax.data import procedural as P
from showo_jax.data import transforms
from showo_jax.models import fusion, magvit2, showo
from showo_jax.models.phi import PhiConfig
from showo_jax.models.siglip import SiglipConfig, SiglipEncoder
from showo_jax.train import tasks

FAMILY = "showo_v1_und"
TOY_CODEBOOK_BITS = 6


# ------------------------------------------------------------------------------------------ configs
def magvit_config(preset: str, resolution: int) -> magvit2.MAGVITv2Config:
  """``toy``: 4 levels (x8 downsampling), width 16, 6-bit LFQ (64 codes); ``magvitv2``: the real tokenizer."""
  if preset == "magvitv2":
    return magvit2.MAGVITv2Config.magvitv2()
  if preset != "toy":
    raise ValueError(f"unknown MAGVIT preset {preset!r}: toy | magvitv2")
  return magvit2.MAGVITv2Config(ch=16, encoder_ch_mult=(1, 2, 2, 4), encoder_num_res_blocks=(1, 1, 1, 1),
                                decoder_ch_mult=(1, 1, 2, 2), decoder_num_res_blocks=(1, 1, 1, 1), attn_resolutions=(),
                                resolution=resolution, z_channels=TOY_CODEBOOK_BITS, codebook_dim=TOY_CODEBOOK_BITS,
                                num_groups=8)


def vit_config(preset: str) -> SiglipConfig:
  if preset != "toy":
    raise ValueError(f"ViT preset {preset!r}: only the toy random ViT stand-in exists (no CLIP-ViT port)")
  return SiglipConfig.tiny(num_positions=64)


def feature_dim(mcfg, dcfg) -> int:
  if mcfg.visual == "continuous_magvit":
    return magvit_config(dcfg.magvit.preset, dcfg.resolution).z_channels
  if mcfg.visual == "clip_vit":
    return vit_config(dcfg.vit.preset).hidden_size if dcfg.vit.preset == "toy" else 1024
  return 0


def num_visual_tokens(dcfg, visual: str) -> int:
  if visual == "clip_vit":
    return (int(dcfg.resolution) // int(dcfg.vit.patch)) ** 2
  return (int(dcfg.resolution) // magvit_config(dcfg.magvit.preset, dcfg.resolution).downsample_factor) ** 2


def model_config(config) -> showo.ShowoConfig:
  """The Show-o config of a ``showo_v1_und`` run (needs the whole config: the visual input decides the
  projector width and the number of visual positions)."""
  m, d = config.model, config.data
  if m.visual not in ("discrete_magvit", "continuous_magvit", "clip_vit"):
    raise ValueError(f"model.visual {m.visual!r}: discrete_magvit | continuous_magvit | clip_vit")
  w_clip = m.visual != "discrete_magvit"
  n = num_visual_tokens(d, m.visual)
  policy = dict(dtype=m.dtype, param_dtype=m.param_dtype, attention_impl=m.attention_impl)
  if m.preset == "tiny":
    codebook = 2 ** TOY_CODEBOOK_BITS
    v = int(m.llm_vocab_size)
    from showo_jax.data import pipeline
    tok = pipeline.make_tokenizer(d.tokenizer)
    return showo.ShowoConfig(phi=PhiConfig.tiny(vocab_size=v + 10 + codebook + 1, **policy), llm_vocab_size=v,
                             codebook_size=codebook, num_vq_tokens=n, w_clip_vit=w_clip,
                             clip_hidden_size=feature_dim(m, d) or 32, bos_token_id=tok.special.bos,
                             eos_token_id=tok.special.eos)
  cfg = showo.ShowoConfig.show_o(num_vq_tokens=n, w_clip_vit=w_clip, **policy)
  return dataclasses.replace(cfg, clip_hidden_size=feature_dim(m, d) or cfg.clip_hidden_size)


# ------------------------------------------------------------------------------------------ encoders
class ToyViT(nnx.Module):
  """Patch embedding + fixed position table + SigLIP encoder layers (random-init stand-in for CLIP-ViT)."""

  def __init__(self, cfg: SiglipConfig, patch: int, *, rngs: nnx.Rngs):
    self.patch_embed = fusion.PatchEmbed(3, cfg.hidden_size, patch, rngs=rngs)
    self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.num_positions, cfg.hidden_size)))
    self.encoder = SiglipEncoder(cfg, rngs=rngs)

  def __call__(self, x):
    h = self.patch_embed(x)
    return self.encoder(h + self.position[...][:h.shape[1]])


class Encoders:
  """The frozen visual encoders of a run (built from the config's seeds, or converted weights)."""

  def __init__(self, config):
    d, m = config.data, config.model
    self.visual = m.visual
    self.resolution = int(d.resolution)
    if m.visual == "clip_vit":
      self.vit = ToyViT(vit_config(d.vit.preset), int(d.vit.patch), rngs=nnx.Rngs(int(d.vit.seed)))
      self.net = self.vit
    else:
      self.magvit = magvit2.MAGVITv2(magvit_config(d.magvit.preset, int(d.resolution)),
                                     rngs=nnx.Rngs(int(d.magvit.seed)))
      if d.magvit.get("path", ""):
        from safetensors.numpy import load_file
        from showo_jax.convert import common
        common.load_into(self.magvit, load_file(d.magvit.path))
      self.net = self.magvit

  def __call__(self, pixels) -> jax.Array:
    """``[b, H, W, 3]`` in [-1, 1] → codes ``[b, N]`` int32 (discrete) or features ``[b, N, C]`` float32."""
    return _encode(self.net, jnp.asarray(pixels, jnp.float32), self.visual)

  def encode_uint8(self, images: np.ndarray) -> jax.Array:
    return self(transforms.to_unit_range(np.asarray(images, np.uint8)))


@nnx.jit(static_argnames=("visual",))
def _encode(net, x, visual):
  if visual == "clip_vit":
    return net(x).astype(jnp.float32)
  z = net.encoder(x)
  if visual == "continuous_magvit":
    return z.reshape(z.shape[0], -1, z.shape[-1]).astype(jnp.float32)
  zq = net.quantize(z)["z"]
  return net.quantize.get_indices(zq).reshape(x.shape[0], -1).astype(jnp.int32)


# ------------------------------------------------------------------------------------------ rows
@dataclasses.dataclass(frozen=True)
class Layout:
  ids: showo.ShowoTokenIds
  num_visual: int
  max_text_len: int
  placeholder: int

  @property
  def length(self) -> int:
    return self.num_visual + 3 + self.max_text_len

  def prompt(self, q_ids: Sequence[int]) -> list[int]:
    """Everything before the answer (the generation prompt)."""
    return [self.ids.mmu, self.ids.soi] + [self.placeholder] * self.num_visual + [self.ids.eoi, self.ids.sot] + \
        list(q_ids)

  def row(self, q_ids: Sequence[int], a_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    head = self.prompt(q_ids)
    ans = list(a_ids) + [self.ids.eot]
    budget = self.length - len(head)
    if budget < 1:
      raise ValueError(f"question of {len(q_ids)} tokens does not fit max_text_len={self.max_text_len}")
    ans = ans[:budget]
    tokens = head + ans + [self.ids.pad] * (self.length - len(head) - len(ans))
    labels = [-100] * len(head) + ans + [-100] * (self.length - len(head) - len(ans))
    return np.asarray(tokens, np.int32), np.asarray(labels, np.int32)


def layout_of(config, model_cfg: showo.ShowoConfig) -> Layout:
  return Layout(model_cfg.token_ids, model_cfg.num_vq_tokens, int(config.data.max_text_len),
                model_cfg.token_ids.pad)


def encode_answer(tok, answer: str) -> list[int]:
  return tok.encode(" " + answer)


def splice(model: showo.Showo, ids, visual, num_visual: int, discrete: bool):
  """Input ids with codes placed, or input embeddings with projected features placed at ``[2, 2 + N)``."""
  if discrete:
    codes = visual.astype(ids.dtype) + model.cfg.image_token_offset
    return ids.at[:, 2:2 + num_visual].set(codes), None
  emb = model.embed(ids)
  feats = model.project_clip(visual.astype(emb.dtype)).astype(emb.dtype)
  return None, emb.at[:, 2:2 + num_visual].set(feats)


# ------------------------------------------------------------------------------------------ task
def _loss(model, batch, key, loss_cfg):
  del key
  ids = batch["input_ids"]
  discrete = "features" not in batch
  n = model.cfg.num_vq_tokens
  if discrete:
    out = model(ids, mask=prompting_v1.mmu_mask(ids, model.cfg.token_ids.eoi))
  else:
    _, emb = splice(model, ids, batch["features"], n, False)
    out = model(inputs_embeds=emb, mask=prompting_v1.mmu_mask(ids, model.cfg.token_ids.eoi))
  loss, m = losses.ntp_loss(out.logits, batch["labels"])
  coeff = float(loss_cfg.get("mmu_coeff", 1.0)) if loss_cfg is not None else 1.0
  return coeff * loss, {"loss_mmu": loss, "mmu/accuracy": m["ntp_accuracy"], "mmu/tokens": m["ntp_tokens"]}


def _task_for(config) -> tasks.Task:
  """The task of one config (``Trainer`` calls ``task.model_config(config.model)``, but the v1 model config also
  depends on ``config.data``: the representation's feature width and number of visual positions)."""
  return tasks.Task(FAMILY, lambda mcfg: model_config(config), lambda c, r: showo.Showo(c, rngs=r), _loss,
                    uses_latents=False)


# ------------------------------------------------------------------------------------------ data
class HostRows:
  """``step -> host batch`` (pixels in [-1, 1], ids with placeholders, labels): a picklable grain map fn."""

  def __init__(self, config, model_cfg):
    import grain
    from showo_jax.data import pipeline
    d = config.data
    self.tok = pipeline.make_tokenizer(d.tokenizer)
    self.layout = layout_of(config, model_cfg)
    self.bs = int(d.batch_size)
    self.size = int(d.procedural_size)
    self.res = int(d.resolution)
    src = P.VQASource(int(d.seed), int(d.num_records), P.SceneConfig(size=self.size))
    ds = grain.MapDataset.source(src)
    if d.get("shuffle", True):
      ds = ds.shuffle(seed=int(d.seed) + 17)
    self.records = ds.repeat()
    self.num_records = len(src)

  def __call__(self, step: int) -> dict:
    ids, labs, pix = [], [], []
    for j in range(self.bs):
      s = self.records[int(step) * self.bs + j]
      t, lab = self.layout.row(self.tok.encode(s["question"]), encode_answer(self.tok, s["answer"]))
      ids.append(t)
      labs.append(lab)
      img = s["image"] if self.size == self.res else transforms.resize_center_crop(s["image"], self.res)
      pix.append(transforms.to_unit_range(img))
    return {"input_ids": np.stack(ids), "labels": np.stack(labs), "pixels": np.stack(pix).astype(np.float32)}


@dataclasses.dataclass
class Info:
  global_batch: int
  local_batch: int
  seq_len: int
  global_shapes: dict
  num_records: int

  def epoch_steps(self, kind: str = "mmu") -> int:
    return self.num_records // self.global_batch

  @property
  def tokens_per_step(self) -> int:
    return self.global_batch * self.seq_len


class V1Data:
  """What the shared ``Trainer`` needs from a data object: a checkpointable grain iterator, ``info``,
  ``batch_shardings``, ``next_global`` (encodes pixels with the frozen encoders on the device), ``close``."""

  def __init__(self, config, model_cfg):
    import grain
    self.host = HostRows(config, model_cfg)
    self.encoders = Encoders(config)
    ds = grain.MapDataset.range(0, 2 ** 62).map(self.host)
    self.iterator = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))
    b, length = self.host.bs, self.host.layout.length
    shapes = {"input_ids": ((b, length), jnp.int32), "labels": ((b, length), jnp.int32)}
    if config.model.visual != "discrete_magvit":
      shapes["features"] = ((b, model_cfg.num_vq_tokens, model_cfg.clip_hidden_size), jnp.float32)
    self.info = Info(b, b, length, {k: jax.ShapeDtypeStruct(s, t) for k, (s, t) in shapes.items()},
                     self.host.num_records)
    self.discrete = config.model.visual == "discrete_magvit"
    self.offset = model_cfg.image_token_offset
    self.n = model_cfg.num_vq_tokens

  def batch_shardings(self, mesh, rules) -> dict:
    from showo_jax import sharding
    return {k: sharding.batch_sharding(mesh, len(v.shape), rules) for k, v in self.info.global_shapes.items()}

  def next_host(self) -> dict:
    return next(self.iterator)

  def next_global(self, mesh, rules) -> dict:
    from showo_jax import sharding
    host = self.next_host()
    vis = self.encoders(host.pop("pixels"))
    if self.discrete:
      host["input_ids"] = np.asarray(host["input_ids"]).copy()
      host["input_ids"][:, 2:2 + self.n] = np.asarray(vis) + self.offset
    else:
      host["features"] = np.asarray(vis)
    return sharding.shard_batch(host, mesh, rules)

  def close(self) -> None:
    close = getattr(self.iterator, "close", None)
    if close is not None:
      close()


def train(config, workdir: str, *, num_steps: int | None = None) -> dict:
  """Train a ``showo_v1_und`` config through the shared ``Trainer`` (same return value as ``loop.run``)."""
  from showo_jax.train import loop
  tasks.TASKS[FAMILY] = _task_for(config)
  mcfg = model_config(config)
  trainer = loop.Trainer(config, workdir, data_iter=V1Data(config, mcfg))
  try:
    return trainer.train(num_steps=num_steps)
  finally:
    trainer.close()


# ------------------------------------------------------------------------------------------ runs + eval
def _run(config, model_cfg, model, step, workdir):
  from showo_jax.data import pipeline
  from showo_jax.eval.runs import Run
  return Run(config, FAMILY, model_cfg, model, pipeline.make_tokenizer(config.data.tokenizer), int(step), workdir,
             None, extras={"encoders": Encoders(config), "layout": layout_of(config, model_cfg)})


def load_run(config, workdir: str, step: int | None = None):
  from showo_jax.eval import runs
  tasks.TASKS[FAMILY] = _task_for(config)
  model_cfg, model, step = runs.load_model(config, workdir, step)
  return _run(config, model_cfg, model, step, workdir)


def fresh_run(config, seed: int | None = None):
  mcfg = model_config(config)
  model = showo.Showo(mcfg, rngs=nnx.Rngs(config.seed if seed is None else seed))
  return _run(config, mcfg, model, 0, "")


def answer(run, images: Sequence[np.ndarray], questions: Sequence[str], *, max_new_tokens: int = 6,
           batch_size: int = 32) -> list[str]:
  """Greedy answers (``maskgit.mmu_generate``, ``top_k=1``); prompts are grouped by length (no padding
  inside the v1 layout), each group decoded in fixed-size batches."""
  from showo_jax import maskgit
  lay: Layout = run.extras["layout"]
  enc: Encoders = run.extras["encoders"]
  tok = run.tokenizer
  model = run.model
  discrete = enc.visual == "discrete_magvit"
  vis = np.asarray(enc.encode_uint8(np.stack([transforms.resize_center_crop(im, enc.resolution) for im in images])))
  prompts = [lay.prompt(tok.encode(q)) for q in questions]
  out: list[str] = [""] * len(prompts)
  groups: dict[int, list[int]] = {}
  for i, p in enumerate(prompts):
    groups.setdefault(len(p), []).append(i)
  for _, idx in sorted(groups.items()):
    for a in range(0, len(idx), batch_size):
      chunk = idx[a:a + batch_size]
      full = chunk + [chunk[-1]] * (batch_size - len(chunk))
      ids = jnp.asarray(np.stack([prompts[i] for i in full]), jnp.int32)
      v = jnp.asarray(vis[np.asarray(full)])
      mask = prompting_v1.mmu_mask(ids, lay.ids.eoi)
      ids2, emb = splice(model, ids, v, lay.num_visual, discrete)
      toks, lens = maskgit.mmu_generate(model, ids2 if discrete else None, inputs_embeds=emb, mask=mask,
                                        max_new_tokens=max_new_tokens, top_k=1, eot_token=lay.ids.eot)
      toks, lens = np.asarray(toks), np.asarray(lens)
      for r, i in enumerate(chunk):
        row = [int(t) for t in toks[r, :lens[r]] if int(t) < len(tok) and int(t) != lay.ids.eot]
        out[i] = tok.decode(row, skip_special_tokens=True).strip()
  return out


@nnx.jit(static_argnames=("num_visual", "discrete"))
def _nll(model, ids, labels, visual, num_visual, discrete):
  ids2, emb = splice(model, ids, visual, num_visual, discrete)
  mask = prompting_v1.mmu_mask(ids, model.cfg.token_ids.eoi)
  out = model(ids2, mask=mask) if discrete else model(inputs_embeds=emb, mask=mask)
  lg = out.logits[:, :-1].astype(jnp.float32)
  lb = labels[:, 1:]
  valid = lb != -100
  nll = jax.nn.logsumexp(lg, -1) - jnp.take_along_axis(lg, jnp.where(valid, lb, 0)[..., None], -1)[..., 0]
  return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid)


def suite_mmu(run, s: dict) -> dict:
  from showo_jax.eval import mmu
  from showo_jax.eval.suites import _prefixed
  items = mmu.vqa_set(int(s["num_vqa"]), int(s["seed"]), size=int(run.config.data.procedural_size))
  preds = answer(run, [it.image for it in items], [it.question for it in items],
                 max_new_tokens=int(s.get("max_new_tokens", 6)), batch_size=int(s["batch_size"]))
  metrics = _prefixed("vqa", mmu.score_vqa(preds, items))
  metrics["vqa_blind_prior"] = mmu.blind_prior(items, size=int(run.config.data.procedural_size))["accuracy"]
  return {"metrics": metrics,
          "details": {"vqa_examples": [{"q": it.question, "a": it.answer, "pred": p}
                                       for it, p in list(zip(items, preds))[:12]]}}


def suite_heldout(run, s: dict) -> dict:
  """Answer NLL of held-out VQA rows (teacher forcing), the low-variance understanding metric."""
  lay: Layout = run.extras["layout"]
  enc: Encoders = run.extras["encoders"]
  n, bs, seed = int(s["num_heldout"]), int(s["batch_size"]), int(s["seed"])
  cfg = P.SceneConfig(size=int(run.config.data.procedural_size))
  samples = [P.vqa_sample(seed + 5, i, cfg) for i in range(n)]
  total = count = 0.0
  for a in range(0, n, bs):
    chunk = list(range(a, min(n, a + bs)))
    full = chunk + [chunk[-1]] * (bs - len(chunk))
    rows = [lay.row(run.tokenizer.encode(samples[i]["question"]), encode_answer(run.tokenizer, samples[i]["answer"]))
            for i in full]
    ids = np.stack([r[0] for r in rows])
    labels = np.stack([r[1] for r in rows])
    labels[len(chunk):] = -100
    vis = enc.encode_uint8(np.stack([transforms.resize_center_crop(samples[i]["image"], enc.resolution)
                                     for i in full]))
    t, c = _nll(run.model, jnp.asarray(ids), jnp.asarray(labels), vis, lay.num_visual,
                enc.visual == "discrete_magvit")
    total += float(t)
    count += float(c)
  return {"metrics": {"heldout_vqa_nll": total / max(1.0, count)}, "details": {}}


def _needs_config():
  raise ValueError(f"{FAMILY} needs the whole config: train with showo_jax.eval.v1_toy.train(config, workdir)")


tasks.TASKS.setdefault(FAMILY, _needs_config)
