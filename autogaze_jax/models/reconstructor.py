"""The VideoMAE-AG reconstructor (docs/design.md, "Reconstructor"): a ViT-MAE whose encoder sees only the
gazed multi-scale patches of all frames (block-causal over frames) and whose decoder
predicts the finest-scale pixels of selected frames.

Static shapes (docs/design.md, "Reconstructor"): gazes come as local ids (B, T, G) with PAD = V; the decoder sequence
is [cls | all T*G gaze slots | R*V canvas tokens of the reconstructed frames], with the slots
of reconstructed frames masked as keys. Masks follow one rule (see vit_blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import recon_config
from autogaze_jax.models.patches import multiscale_patches
from autogaze_jax.models.vit_blocks import ViTBlock, layer_norm, linear


def sincos_2d(dim: int, grid: int) -> np.ndarray:
  """(1 + grid^2, dim) fixed table, row 0 (cls) zeros; first half encodes x, second y."""
  omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
  ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
  enc = lambda p: np.concatenate([np.sin(np.outer(p.ravel(), omega)), np.cos(np.outer(p.ravel(), omega))], 1)
  table = np.concatenate([enc(xs), enc(ys)], 1)
  return np.concatenate([np.zeros((1, dim)), table], 0).astype(np.float32)


def encoder_pos_tables(pos_1sd, scales, patch):
  """2-D bicubic resize of the 14x14 table to each scale's grid -> (V, D)."""
  table = pos_1sd[0, 1:]
  g0 = int(round(table.shape[0] ** 0.5))
  grid = jnp.transpose(table.reshape(g0, g0, -1), (2, 0, 1))
  out = []
  for s in scales:
    g = s // patch
    out.append(jnp.transpose(image_lib.resize_bicubic(grid, (g, g)), (1, 2, 0)).reshape(g * g, -1))
  return jnp.concatenate(out, 0)


def decoder_pos_tables(pos_1sd, scales, patch):
  """1-D bicubic resize of the 196 rows to each scale's count (an inherited quirk) -> (V, d)."""
  table = pos_1sd[0, 1:]
  out = []
  for s in scales:
    n = (s // patch) ** 2
    out.append(jnp.asarray(image_lib.bicubic_matrix(table.shape[0], n)) @ table)
  return jnp.concatenate(out, 0)


def _block(layer, x, fid, kpad):
  return layer(x, fid, kpad)


def _remat_block(layer, x, fid, kpad):
  """The block rematerialised: only its input is kept for the backward pass and the rest is
  recomputed, so activation memory per clip stops growing with depth (configs/recon.py large).
  A pure jax.checkpoint over the layer's split state, so it also runs where the module came
  from an outer trace (the frozen reconstructor inside GRPO's per-clip vmap)."""
  graphdef, state = nnx.split(layer)
  run = jax.checkpoint(lambda st, x, fid, kpad: nnx.merge(graphdef, st)(x, fid, kpad))
  return run(state, x, fid, kpad)


class Reconstructor(nnx.Module):
  def __init__(self, cfg, rngs: nnx.Rngs):
    recon_config.validate(cfg)
    self.cfg = cfg
    d, dd, p = cfg.hidden_size, cfg.decoder_hidden_size, cfg.patch_size
    n = len(cfg.scales)
    param = lambda shape, axes, std=0.02: nnx.Param(
      jax.random.normal(rngs.params(), shape, jnp.float32) * std, out_sharding=axes
    )
    self.patch_proj = linear(3 * p * p, d, ("conv_in", "embed"), rngs)
    self.cls_token = param((1, 1, d), (None, None, "embed"))
    grid = recon_config.pos_grid(cfg)
    self.position_embeddings = nnx.Variable(jnp.asarray(sincos_2d(d, grid))[None])
    self.scale_embed = param((n, d), (None, "embed"))
    self.time_embed = param((cfg.max_num_frames, d), (None, "embed"))
    self.layers = nnx.List([
      ViTBlock(d, cfg.num_heads, cfg.intermediate_size, cfg.layer_norm_eps, rngs) for _ in range(cfg.num_layers)
    ])
    self.layernorm = layer_norm(d, cfg.layer_norm_eps, rngs)
    self.decoder_embed = linear(d, dd, ("embed", "mlp"), rngs)
    self.mask_token = param((1, 1, dd), (None, None, "mlp"))
    self.decoder_pos_embed = nnx.Variable(jnp.asarray(sincos_2d(dd, grid))[None])
    self.decoder_scale_embed = param((n, dd), (None, "mlp"))
    self.decoder_time_embed = param((cfg.max_num_frames, dd), (None, "mlp"))
    self.decoder_layers = nnx.List([
      ViTBlock(dd, cfg.decoder_num_heads, cfg.decoder_intermediate_size, cfg.layer_norm_eps, rngs)
      for _ in range(cfg.decoder_num_layers)
    ])
    self.decoder_norm = layer_norm(dd, cfg.layer_norm_eps, rngs)
    self.decoder_pred = linear(dd, p * p * 3, ("mlp", None), rngs)

  def _scale_index(self):
    return np.concatenate([np.full(c, i) for i, c in enumerate(recon_config.tokens_per_scale(self.cfg))])

  def _run(self, layers, x, fid, kpad):
    """The blocks in order, each rematerialised when cfg.remat."""
    block = _remat_block if self.cfg.get("remat", False) else _block
    for layer in layers:
      x = block(layer, x, fid, kpad)
    return x

  def embed_all(self, video_bt3hw):
    """Every multi-scale token of every frame, with pos/scale/time embeddings: (B, T, V, D)."""
    t = video_bt3hw.shape[1]
    p = self.cfg.patch_size
    x = self.patch_proj(multiscale_patches(video_bt3hw, self.cfg.scales, p))
    x = x + encoder_pos_tables(self.position_embeddings[...], self.cfg.scales, p)
    x = x + self.scale_embed[...][self._scale_index()]
    return x + self.time_embed[...][:t][None, :, None]

  def encode(self, video_bt3hw, ids_btg, tokens=None):
    """Latent (B, 1 + T*G, D) of the gazed tokens (PAD slots masked). tokens: `embed_all` of
    the video when the caller already has it (many gaze sets scored on one clip)."""
    b, t, g = ids_btg.shape
    v = sum(recon_config.tokens_per_scale(self.cfg))
    pad = ids_btg == v
    tokens = self.embed_all(video_bt3hw) if tokens is None else tokens
    x = jnp.take_along_axis(tokens, jnp.where(pad, 0, ids_btg)[..., None], axis=2).reshape(b, t * g, -1)
    cls = self.cls_token[...] + self.position_embeddings[...][:, :1]
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, x.shape[-1])), x], 1)
    x = mesh_lib.constrain(x, ("batch", None, "act_embed"))
    fid = jnp.concatenate([jnp.full((b, 1), -1), jnp.broadcast_to(jnp.repeat(jnp.arange(t), g), (b, t * g))], 1)
    kpad = jnp.concatenate([jnp.zeros((b, 1), bool), pad.reshape(b, t * g)], 1)
    return self.layernorm(self._run(self.layers, x, fid, kpad))

  def decoder_slots(self, latent, ids_btg):
    """The decoder's view of the encoder output: (cls token (B, 1, d), the gaze slots with their
    position/scale/time embeddings (B, T, G, d), the bare projected slots (B, T, G, d))."""
    b, t, g = ids_btg.shape
    v = sum(recon_config.tokens_per_scale(self.cfg))
    x = self.decoder_embed(latent)
    cls, slots = x[:, :1], x[:, 1:].reshape(b, t, g, -1)
    safe_ids = jnp.where(ids_btg == v, 0, ids_btg)
    slot_tok = slots + self.decoder_token_embed()[safe_ids] + self.decoder_time_embed[...][:t][None, :, None]
    return cls + self.decoder_pos_embed[...][:, :1], slot_tok, slots

  def decoder_token_embed(self):
    """(V, d) position + scale embeddings of every token of a frame in the decoder."""
    emb = decoder_pos_tables(self.decoder_pos_embed[...], self.cfg.scales, self.cfg.patch_size)
    return emb + self.decoder_scale_embed[...][self._scale_index()]

  def canvas(self, sel_slots, sel_ids, frame_idx_r):
    """Canvas tokens (..., R, V, d) of reconstructed frames: mask tokens, overwritten by a
    frame's projected slots where it was gazed (sel_*: (..., R, G, ...), PAD -> a dump row)."""
    v = sum(recon_config.tokens_per_scale(self.cfg))
    lead = sel_ids.shape[:-1]
    canvas = jnp.broadcast_to(self.mask_token[...].reshape(-1), (*lead, v + 1, sel_slots.shape[-1]))
    idx = jnp.indices(sel_ids.shape)[:-1]
    canvas = canvas.at[(*idx, sel_ids)].set(sel_slots)[..., :v, :]
    time = self.decoder_time_embed[...][frame_idx_r]  # (R, d)
    return canvas + self.decoder_token_embed() + time[:, None]

  def pixels(self, canvas_out):
    """Decoder outputs of canvas tokens (..., V, d) -> pixels (..., 3, S, S) of the finest scale."""
    counts = recon_config.tokens_per_scale(self.cfg)
    out = self.decoder_pred(self.decoder_norm(canvas_out))[..., sum(counts) - counts[-1] :, :]
    gl, p = int(round(counts[-1] ** 0.5)), self.cfg.patch_size
    lead = out.shape[:-2]
    img = out.reshape(*lead, gl, gl, p, p, 3)
    n = len(lead)
    img = img.transpose(*range(n), n + 4, n, n + 2, n + 1, n + 3)
    return img.reshape(*lead, 3, gl * p, gl * p)

  def decode(self, latent, ids_btg, frame_idx_r):
    """Predicted pixels of the reconstructed frames, (B, R, 3, S, S) with S the last scale."""
    b, t, g = ids_btg.shape
    v, r = sum(recon_config.tokens_per_scale(self.cfg)), frame_idx_r.shape[0]
    pad = ids_btg == v
    cls, slot_tok, slots = self.decoder_slots(latent, ids_btg)
    canvas = self.canvas(slots[:, frame_idx_r], ids_btg[:, frame_idx_r], frame_idx_r)  # (B, R, V, d)
    recon_frame = jnp.zeros((t,), bool).at[frame_idx_r].set(True)
    seq = jnp.concatenate([cls, slot_tok.reshape(b, t * g, -1), canvas.reshape(b, r * v, -1)], 1)
    fid = jnp.concatenate([jnp.full((1,), -1), jnp.repeat(jnp.arange(t), g), jnp.repeat(frame_idx_r, v)])
    kpad = jnp.concatenate([jnp.zeros((b, 1), bool), (pad | recon_frame[None, :, None]).reshape(b, t * g),
                            jnp.zeros((b, r * v), bool)], 1)
    fid = jnp.broadcast_to(fid, (b, fid.shape[0]))
    seq = self._run(self.decoder_layers, seq, fid, kpad)
    return self.pixels(seq[:, 1 + t * g :].reshape(b, r, v, -1))

  def __call__(self, video_bt3hw, ids_btg, frame_idx_r, tokens=None):
    return self.decode(self.encode(video_bt3hw, ids_btg, tokens), ids_btg, frame_idx_r)
