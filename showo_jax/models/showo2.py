"""Show-o2: Qwen2.5 LLM + dual-path visual embeddings + flow head (spec ``showo2.md`` §1, §4.9, §7, §8).

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/modeling_showo2_qwen2_5.py::Showo2Qwen2_5`` (``forward``,
``unpatchify``). Attributes carry the official state-dict prefixes (``showo``, ``image_embedder_und``,
``image_embedder_gen``, ``position_embedding``, ``und_trans``, ``fusion_proj``, ``time_embed``,
``time_embed_proj``, ``diff_proj``, ``diffusion_head_a``, ``diffusion_head_b``).

One forward pass (multimodal branch):

1. ``embeds = showo.embed(text_tokens)``; latents (channels-last ``[n, H, W, C]`` or ``[n, T, H, W, C]``, one per
   slot ``i*M + j`` of ``modality_positions``, dummy slots included) → ``fusion.py`` dual path → ``[n, Limg, D]``;
   ``t`` → ``time_embed`` (unprojected, ``[n, Dh]``) → ``time_embed_proj`` → ``[n, D]``.
2. Splice (§4.9, exact): for every slot, in order, ``embeds[i, o] = time_proj[idx]`` — **also for (0, 0)
   slots, which therefore overwrite position 0** — and ``embeds[i, o+1 : o+l] = image_embeds[idx, :l-1]``.
3. The LLM runs under the omni mask (default ``masks.omni(modality_positions, L)``) → logits and the
   post-final-norm hidden states.
4. The flow head runs on **all** positions: ``diff_proj`` → ``diffusion_head_a`` (adaLN only inside the spans
   ``[o, o+l)``) → ``diffusion_head_b`` → ``v_tokens [b, L, p·p·C]``.
5. ``v_pred``: each slot's tokens ``o+1 … o+Limg`` (time token dropped), **un-patchified by a raw reshape**: token
   ``k`` holds the ``p²`` consecutive *raster* pixels ``[k·p², (k+1)·p²)`` of the latent, channel-last (§8.3
   quirk; the input PatchEmbed does use real 2×2 patches). ``losses.patchify_targets`` is the exact inverse.

Deviations (documented, shape-static by design):

* ``v_pred`` has one entry per latent slot (``[n, ...]``, aligned with the ``latents`` given), with zeros for
  slots of length 0. Upstream stacks only the slots before the first ``length == 0`` of each row (a
  data-dependent shape); for every layout without dummy slots (T2I, CFG, video, the fixtures) the two agree.
* ``only_denoise_last_image`` (a sampler post-processing of upstream ``forward``) is left to the sampler.
* ``image_latent_height/width`` keep the upstream meaning: the configured *token grid* (27 for the 432-px
  checkpoints, 32 / 64 for the HQ 512 / 1024 configs), used only to pick the position-table branch
  (``fusion.position_embeds``). The Show-o2 contract's docstring suggested 54 (latent pixels); the upstream
  semantics are what the fixtures and checkpoints need.
* Ablation switches ``use_semantic`` / ``use_projector`` (paper Tab. 10) drop one path; ``fusion_proj`` then
  takes only the remaining features. Both True (the released models) is the reference behaviour.
  ``visual_attention = "causal"`` replaces the default omni mask by a plain causal one (mask ablation).

Prefix reuse (:class:`Showo2Cache`): with a cache at index ``P`` the call processes absolute positions
``P … P+l-1``; the LLM and the flow head read/write their KV caches. A prefix that ends before the first
visual block never attends to it (omni mask) and is not modulated, so its caches, filled once (``latents=None,
compute_flow=True``), serve every denoising step. Such a prefix call does no splicing, so it must not contain a
visual block or a ``(0, 0)`` slot's time token (true for T2I prompts).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from showo_jax import masks as masks_lib
from showo_jax import packing
from showo_jax import rows as rows_lib
from showo_jax import sharding
from showo_jax.models import flow_head as fh
from showo_jax.models import fusion, layers
from showo_jax.models.flow_head import FlowHeadConfig, FlowKVCache
from showo_jax.models.qwen2 import KVCache, Qwen2Config, Qwen2ForCausalLM, dtype_of
from showo_jax.models.siglip import SiglipConfig, SiglipEncoder


@dataclasses.dataclass(frozen=True)
class Showo2Config:
  llm: Qwen2Config = dataclasses.field(default_factory=Qwen2Config.qwen2_5_1_5b)
  semantic: SiglipConfig = dataclasses.field(default_factory=SiglipConfig.so400m_patch14_384)
  flow_head: FlowHeadConfig = dataclasses.field(default_factory=FlowHeadConfig.showo2)
  image_latent_dim: int = 16           # VAE channels
  patch_size: int = 2
  image_latent_height: int = 27        # configured TOKEN grid (upstream meaning); picks the position branch
  image_latent_width: int = 27
  clip_latent_dim: int = 1152
  use_semantic: bool = True
  use_projector: bool = True
  visual_attention: str = "omni"       # default mask: "omni" (reference) or "causal" (ablation)

  @property
  def hidden_size(self) -> int:
    return self.llm.hidden_size

  @property
  def dtype(self):
    return dtype_of(self.llm.dtype)

  @property
  def param_dtype(self):
    return dtype_of(self.llm.param_dtype)

  @classmethod
  def showo2_1_5b(cls, resolution: int = 432, **policy) -> "Showo2Config":
    """show-o2-1.5B (432 px: 27×27 grid; 512 / 1024 px HQ configs: 32 / 64, interpolated positions)."""
    g = resolution // 16
    return with_policy(cls(llm=Qwen2Config.qwen2_5_1_5b(), image_latent_height=g, image_latent_width=g), **policy)

  @classmethod
  def showo2_7b(cls, resolution: int = 432, **policy) -> "Showo2Config":
    g = resolution // 16
    return with_policy(cls(llm=Qwen2Config.qwen2_5_7b(), image_latent_height=g, image_latent_width=g), **policy)

  @classmethod
  def tiny(cls, **policy) -> "Showo2Config":
    """Tiny sizes of the parity fixture (LLM 64, SigLIP 32 with a 4×4 table, flow head 96, 8×8 latents)."""
    return with_policy(cls(llm=Qwen2Config.tiny(vocab_size=310), semantic=SiglipConfig.tiny(),
                           flow_head=FlowHeadConfig.tiny(), image_latent_height=4, image_latent_width=4,
                           clip_latent_dim=32), **policy)

  @classmethod
  def from_fixture(cls, cfg_json: dict, **policy) -> "Showo2Config":
    """From a ``showo2_full``-style ``config.json`` (``init_kwargs``, ``qwen2_config``, ...)."""
    ik = cfg_json["init_kwargs"]
    if not ik.get("add_time_embeds", True):
      raise ValueError("add_time_embeds=False is not used by any released model and not supported")
    llm = Qwen2Config.from_hf({**cfg_json["qwen2_config"], "vocab_size": ik["llm_vocab_size"]})
    sem = SiglipConfig.from_hf(cfg_json["siglip_vision_config"])
    if sem.hidden_size != ik["clip_latent_dim"] or llm.hidden_size != ik["hidden_size"]:
      raise ValueError("clip_latent_dim / hidden_size disagree with the SigLIP / Qwen2 configs")
    fhc = FlowHeadConfig.from_diffusion_head_config(cfg_json["diffusion_head_config"], ik["num_diffusion_layers"],
                                                    patch_size=ik["patch_size"], out_channels=ik["image_latent_dim"])
    cfg = cls(llm=llm, semantic=sem, flow_head=fhc, image_latent_dim=ik["image_latent_dim"],
              patch_size=ik["patch_size"], image_latent_height=ik["image_latent_height"],
              image_latent_width=ik["image_latent_width"], clip_latent_dim=ik["clip_latent_dim"])
    return with_policy(cfg, **policy)


def with_policy(cfg: Showo2Config, *, dtype: str | None = None, param_dtype: str | None = None,
                scan_layers: bool | None = None, remat_policy: str | None = None,
                attention_impl: str | None = None, **fields) -> Showo2Config:
  """Set the execution policy on every sub-config (LLM, SigLIP, flow head) at once, plus plain fields."""
  pol = {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers,
                                remat_policy=remat_policy, attention_impl=attention_impl).items() if v is not None}
  return dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, **pol),
                             semantic=dataclasses.replace(cfg.semantic, **pol),
                             flow_head=dataclasses.replace(cfg.flow_head, **pol), **fields)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Showo2Cache:
  """LLM and flow-head KV caches advanced together (prefix reuse across denoising steps)."""
  llm: KVCache
  flow: FlowKVCache

  @classmethod
  def init(cls, cfg: Showo2Config, batch: int, max_len: int) -> "Showo2Cache":
    return cls(KVCache.init(cfg.llm, batch, max_len), FlowKVCache.init(cfg.flow_head, batch, max_len))

  @property
  def index(self):
    return self.llm.index

  @property
  def max_len(self) -> int:
    return self.llm.k.shape[2]


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Showo2Output:
  logits: Any                 # [b, l, V] or None
  v_pred: Any                 # [n, H, W, C] / [n, T, H, W, C] (raster-strip unpatchify) or None
  v_tokens: Any               # [b, l, p*p*C] raw flow-head output per position, or None
  last_hidden: Any            # [b, l, D] LLM hidden state after the final norm
  cache: Showo2Cache | None = None
  intermediates: dict | None = None   # the fixture hook points, when requested


class Showo2(nnx.Module):
  """``Showo2Qwen2_5``; see the module docstring for the data flow and the quirks kept."""

  def __init__(self, cfg: Showo2Config, *, rngs: nnx.Rngs):
    if not (cfg.use_semantic or cfg.use_projector):
      raise ValueError("at least one of use_semantic / use_projector must be on")
    if cfg.use_semantic and cfg.semantic.hidden_size != cfg.clip_latent_dim:
      raise ValueError("clip_latent_dim must equal the SigLIP width")
    self.cfg = cfg
    dt, pdt = cfg.dtype, cfg.param_dtype
    d, ds, dh = cfg.hidden_size, cfg.clip_latent_dim, cfg.flow_head.hidden_size
    self.showo = Qwen2ForCausalLM(cfg.llm, rngs=rngs)
    fusion_in = 0
    if cfg.use_semantic:
      self.image_embedder_und = fusion.PatchEmbed(cfg.image_latent_dim, ds, cfg.patch_size, dtype=dt,
                                                  param_dtype=pdt, rngs=rngs)
      self.position_embedding = layers.Embed(cfg.semantic.num_positions, ds, names=(None, "embed"), dtype=dt,
                                             param_dtype=pdt, rngs=rngs)
      self.und_trans = SiglipEncoder(cfg.semantic, rngs=rngs)
      fusion_in += ds
    if cfg.use_projector:
      self.image_embedder_gen = fusion.PatchEmbed(cfg.image_latent_dim, d, cfg.patch_size, dtype=dt,
                                                  param_dtype=pdt, rngs=rngs)
      fusion_in += d
    self.fusion_proj = fusion.make_fusion_proj(fusion_in, d, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.time_embed = fh.TimestepEmbedder(cfg.flow_head, rngs=rngs)
    # Upstream creates these two only when D != Dh (true for both released sizes).
    if d != dh:
      self.time_embed_proj = layers.Linear(dh, d, names=("embed", None), dtype=dt, param_dtype=pdt, rngs=rngs)
      self.diff_proj = nnx.List([
          layers.Linear(d, dh, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs),
          fh.Activation("gelu"),
          layers.Linear(dh, dh, names=("mlp", "embed"), dtype=dt, param_dtype=pdt, rngs=rngs),
      ])
    else:
      self.time_embed_proj = None
      self.diff_proj = None
    self.diffusion_head_a = fh.make_blocks(cfg.flow_head, rngs)
    self.diffusion_head_b = fh.FinalLayer(cfg.flow_head, rngs=rngs)

  # --------------------------------------------------------------------------- visual embeddings
  def visual_embeds(self, latents: Float[Array, "n *s c"], t: Float[Array, "n"]
                    ) -> tuple[Float[Array, "n li d"], Float[Array, "n dh"]]:
    """Dual-path embeddings ``[n, Limg, D]`` of channels-last latents and the unprojected time embeds."""
    return self._visual(latents, t, None)

  def project_time(self, time_embeds: Float[Array, "n dh"]) -> Float[Array, "n d"]:
    """``time_embed_proj`` (identity when the LLM width equals the flow-head width)."""
    if self.time_embed_proj is None:
      return time_embeds
    return sharding.constrain(self.time_embed_proj(time_embeds), ("act_batch", "act_embed"))

  def _visual(self, latents, t, inter: dict | None):
    cfg = self.cfg
    dt = cfg.dtype
    x, frames = fusion.fold_video(latents.astype(dt))  # [n(T), H, W, C]
    p = cfg.patch_size
    grid = (x.shape[1] // p, x.shape[2] // p)
    feats = []
    if cfg.use_semantic:
      und = self.image_embedder_und(x)  # [nT, L, Ds]
      pos = fusion.position_embeds(self.position_embedding.embedding[...],
                                   (cfg.image_latent_height, cfg.image_latent_width), grid)
      und_in = und + pos.astype(dt)[None]
      und_out = self.und_trans(und_in)
      feats.append(fusion.unfold_tokens(und_out, frames))
      if inter is not None:
        inter.update(image_embeds_und_patch=und, und_trans_input=und_in, und_trans_output=und_out,
                     position_embeds=pos)
    if cfg.use_projector:
      gen = self.image_embedder_gen(x)  # [nT, L, D]
      feats.append(fusion.unfold_tokens(gen, frames))
      if inter is not None:
        inter["image_embeds_gen"] = gen
    feats = [sharding.constrain(f, ("act_batch", "act_len", "act_embed")) for f in feats]
    image_embeds = fh.sequential(self.fusion_proj, jnp.concatenate(feats, axis=-1))
    image_embeds = sharding.constrain(image_embeds, ("act_batch", "act_len", "act_embed"))
    time_embeds = self.time_embed(t)
    if inter is not None:
      inter.update(fusion_proj_output=image_embeds, time_embed_output=time_embeds)
    return image_embeds, time_embeds

  # --------------------------------------------------------------------------- splicing / extraction
  def splice(self, text_embeds: Float[Array, "b l d"], image_embeds: Float[Array, "n li d"],
             time_proj: Float[Array, "n d"], modality_positions: Int[Array, "b m 2"],
             start: int | Int[Array, ""] = 0) -> Float[Array, "b l d"]:
    """Write time/image embeddings at their slots (upstream loop order: later slots win).

    ``start`` is the absolute position of ``text_embeds[:, 0]`` (the cache index when decoding).
    """
    b, l, _ = text_embeds.shape
    mp = jnp.asarray(modality_positions, jnp.int32)
    m = mp.shape[1]
    limg = image_embeds.shape[1]
    pos = start + jnp.arange(l, dtype=jnp.int32)[None, :]
    out = text_embeds
    image_embeds = image_embeds.astype(out.dtype)
    time_proj = time_proj.astype(out.dtype)
    for j in range(m):
      o, ln = mp[:, j, 0:1], mp[:, j, 1:2]
      idx = jnp.arange(b) * m + j
      rel = pos - o - 1
      is_img = (rel >= 0) & (rel < ln - 1)                   # [o+1, o+l): image tokens [:l-1]
      img = jnp.take_along_axis(image_embeds[idx], jnp.clip(rel, 0, limg - 1)[..., None], axis=1)  # [b, l, d]
      out = jnp.where(is_img[..., None], img, out)
      # The time token is written even for (0, 0) slots: position 0 is overwritten (upstream quirk).
      out = jnp.where((pos == o)[..., None], time_proj[idx][:, None, :], out)
    return out

  def extract_image_tokens(self, v_tokens: Float[Array, "b l o"], modality_positions: Int[Array, "b m 2"],
                           num_tokens: int, start: int | Int[Array, ""] = 0) -> Float[Array, "n li o"]:
    """Per slot, the ``num_tokens`` outputs after its time token (zeros for empty slots)."""
    b, l, _ = v_tokens.shape
    mp = jnp.asarray(modality_positions, jnp.int32).reshape(-1, 2)
    n = mp.shape[0]
    m = n // b
    rows = jnp.arange(n) // m
    idx = mp[:, 0:1] + 1 + jnp.arange(num_tokens)[None, :] - start
    toks = v_tokens[rows[:, None], jnp.clip(idx, 0, l - 1)]  # [n, li, o]
    return jnp.where((mp[:, 1] > 0)[:, None, None], toks, 0)

  def unpatchify(self, tokens: Float[Array, "n li o"], spatial: tuple[int, ...]) -> jax.Array:
    """Raw reshape (§8.3): ``[n, Limg, p·p·C]`` → ``[n, (T,) H, W, C]``; token k = raster pixels k·p²…"""
    return tokens.reshape((tokens.shape[0],) + tuple(spatial) + (self.cfg.image_latent_dim,))

  # --------------------------------------------------------------------------- forward
  def __call__(self, text_tokens: Int[Array, "b l"], latents: Float[Array, "n *s c"] | None = None,
               t: Float[Array, "n"] | None = None, modality_positions: Int[Array, "b m 2"] | None = None, *,
               mask: masks_lib.MaskSpec | None = None, cache: Showo2Cache | None = None,
               compute_logits: bool = True, compute_flow: bool | None = None,
               first_frame_as_cond: bool = False, return_intermediates: bool = False,
               logit_rows: Sequence[int] | None = None, flow_rows: Sequence[int] | None = None,
               llm_pack: "packing.LLMPack | None" = None) -> Showo2Output:
    """Forward pass; see the module docstring.

    Args:
      text_tokens: ``[b, l]`` ids (placeholders at visual positions are overwritten by the splice).
      latents: channels-last ``[n, H, W, C]`` / ``[n, T, H, W, C]`` with ``n = b·M`` (one per slot), or None
        for the text-only path (``Showo2Qwen2_5.forward`` with ``image_latents=None``).
      t: ``[n]`` flow times in [0, 1], 1 = data.
      modality_positions: ``[b, M, 2]`` absolute ``(offset, length)``; ``length`` includes the time token.
      mask: default ``masks.omni(modality_positions, L)`` (causal without visual blocks; plain causal when
        ``cfg.visual_attention == "causal"``), query rows sliced to the new positions when a cache is given.
      cache: prefix reuse; the call covers absolute positions ``index … index+l-1``.
      compute_flow: run the flow head (default: when latents or a cache are given). With ``latents=None`` it
        runs unmodulated, which is how a prompt prefix fills the flow-head cache.
      first_frame_as_cond: zero the velocity of latent frame 0 (image-to-video).
      return_intermediates: also return the fixture hook points in ``Showo2Output.intermediates``.
      logit_rows / flow_rows: static batch-row subsets (tuples of ints, ``showo_jax.rows``): the LM head /
        the flow head then run on those rows only, and ``logits`` / ``v_tokens`` / ``v_pred`` hold just them
        (``v_pred`` for their slots, in order). Training uses this to skip rows its losses never read.
      llm_pack: run the LLM on pad-free packed rows (``showo_jax/packing.py``, its key ranges replace the
        LLM's ``mask``) and read its output back in the padded layout for the heads (training).
    """
    cfg = self.cfg
    b, l = text_tokens.shape
    compute_flow = (latents is not None or cache is not None) if compute_flow is None else compute_flow
    if cache is not None and (logit_rows is not None or flow_rows is not None or llm_pack is not None):
      raise ValueError("logit_rows / flow_rows / llm_pack are for full-sequence (training) calls, not with a cache")
    if cache is not None and not compute_flow:
      raise ValueError("with a Showo2Cache the flow head must run too (compute_flow=True), so that the LLM "
                       "and flow-head caches cover the same positions")
    start = cache.index if cache is not None else jnp.zeros((), jnp.int32)
    if modality_positions is None:
      modality_positions = jnp.zeros((b, 1, 2), jnp.int32)
    modality_positions = jnp.asarray(modality_positions, jnp.int32)
    if mask is None:
      total = cache.max_len if cache is not None else l
      if cfg.visual_attention == "omni":
        mask = masks_lib.omni(modality_positions, total)
      elif cfg.visual_attention == "causal":
        mask = masks_lib.causal(b, total)
      else:
        raise ValueError(f"visual_attention must be 'omni' or 'causal', not {cfg.visual_attention!r}")
      if cache is not None:
        mask = masks_lib.slice_queries(mask, start, l)
    inter: dict | None = {} if return_intermediates else None

    embeds = self.showo.embed(text_tokens)
    time_embeds = None
    if latents is not None:
      if t is None:
        raise ValueError("t is required with latents")
      image_embeds, time_embeds = self._visual(latents, t, inter)
      time_proj = self.project_time(time_embeds)
      embeds = self.splice(embeds, image_embeds, time_proj, modality_positions, start)
      if inter is not None:
        inter["time_embed_proj_output"] = time_proj
    if inter is not None:
      inter["llm_inputs_embeds"] = embeds
    if llm_pack is not None:
      out = self.showo(inputs_embeds=llm_pack.gather(embeds), positions=jnp.asarray(llm_pack.positions),
                       mask=masks_lib.MaskSpec(jnp.asarray(llm_pack.k_start), jnp.asarray(llm_pack.k_end)),
                       compute_logits=False)
      last = llm_pack.scatter(out.last_hidden_state, b, l)
      logits = self.showo.logits(last) if compute_logits and logit_rows is None else None
    else:
      out = self.showo(inputs_embeds=embeds, mask=mask, cache=None if cache is None else cache.llm,
                       compute_logits=compute_logits and logit_rows is None)
      last = out.last_hidden_state
      logits = out.logits
    llm_last = last
    if compute_logits and logit_rows is not None:
      logits = self.showo.logits(rows_lib.take(last, logit_rows)) if len(logit_rows) else None
    if inter is not None:
      inter["llm_last_hidden_states"] = last

    v_tokens = v_pred = None
    new_flow = None
    if compute_flow and flow_rows is not None:
      if not len(flow_rows):
        compute_flow = False
      else:   # the flow head sees only these rows: their hidden states, masks, slots and time embeddings
        slots = rows_lib.slots_of(flow_rows, modality_positions.shape[1])
        last, mask, modality_positions = rows_lib.take((last, mask, modality_positions), flow_rows)
        latents, time_embeds = rows_lib.take((latents, time_embeds), slots)   # None stays None
        b = len(flow_rows)
    if compute_flow:
      h = last if self.diff_proj is None else fh.sequential(self.diff_proj, last)
      if inter is not None:
        inter["diff_proj_output"] = h
      if time_embeds is None:  # text-only prefix: nothing to modulate
        time_embeds = jnp.zeros((1, cfg.flow_head.hidden_size), h.dtype)
        slot = jnp.full((b, l), -1, jnp.int32)
      else:
        slot = fh.modality_slots(modality_positions, l, start)
      x, new_flow, outs = fh.apply_blocks(self.diffusion_head_a, cfg.flow_head, h, time_embeds, slot, mask,
                                          cache=None if cache is None else cache.flow,
                                          collect=inter is not None)
      v_tokens = self.diffusion_head_b(x, time_embeds, slot)
      if inter is not None:
        for i, o in enumerate(outs):
          inter[f"diffusion_head_a{i}_output"] = o
        inter["diffusion_head_b_output"] = v_tokens
      if latents is not None:
        spatial = latents.shape[1:-1]  # (H, W) or (T, H, W)
        limg = 1
        for s in spatial:
          limg *= s
        limg //= cfg.patch_size ** 2
        toks = self.extract_image_tokens(v_tokens, modality_positions, limg, start)
        v_pred = self.unpatchify(toks, spatial)
        if first_frame_as_cond and latents.ndim == 5:
          v_pred = v_pred.at[:, 0].set(0)
    new_cache = None
    if cache is not None:
      new_cache = Showo2Cache(out.cache, new_flow if new_flow is not None else cache.flow)
    return Showo2Output(logits=logits, v_pred=v_pred, v_tokens=v_tokens, last_hidden=llm_last,
                        cache=new_cache, intermediates=inter)
