"""A SigLIP/SigLIP2 vision tower that encodes only gazed multi-scale patches (docs/design.md, "Gazed ViT").

Each frame is bicubic-resized to every scale, cut into patches (coarse -> fine, row-major),
and each scale gets the checkpoint's position table bicubic-resized to its grid; there is no
scale or time embedding. The gazed slots (global ids t * V + local, padded slots -> id 0) are
gathered before the patch linear, then the unchanged encoder runs under a frame-aware mask
and the post-LayerNorm. Sequences have a static length: callers pad them to a bucket with
`pack_gazes`, and padded slots are masked as keys (their outputs are garbage).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import vit_config
from autogaze_jax.models.feature_vit import FeatureViT
from autogaze_jax.models.patches import multiscale_patches, patchify
from autogaze_jax.models.vit_blocks import PoolingHead, layer_norm


def attention_rule(attn_type: str, frame_ids_bn):
  """The frame-id rule of vit_blocks for an attention type: (ids, same_frame_only). Key b is
  visible to query a iff ids[b] <= ids[a] (== with same_frame_only) and b is not padded."""
  if attn_type == "block_causal":
    return frame_ids_bn, False
  if attn_type == "frame_independent":
    return frame_ids_bn, True
  if attn_type == "causal":  # token order
    return jnp.broadcast_to(jnp.arange(frame_ids_bn.shape[-1]), frame_ids_bn.shape), False
  if attn_type == "bidirectional":
    return jnp.zeros_like(frame_ids_bn), False
  raise ValueError(f"attn_type: {attn_type!r} is not one of {vit_config.ATTN_TYPES}")


def attention_mask(attn_type: str, frame_ids_bn, pad_bn):
  """The (B, N, N) boolean mask [query, key] that `attn_type` applies (for inspection)."""
  ids, same = attention_rule(attn_type, jnp.asarray(frame_ids_bn))
  k, q = ids[:, None, :], ids[:, :, None]
  return (k == q if same else k <= q) & ~jnp.asarray(pad_bn)[:, None, :]


def pack_gazes(gazing_pos, if_padded, num_gazing_each_frame, bucket: int = 128):
  """Official-format gazes -> int32 positions, bool padding and int32 frame ids, all (B, N')
  with N' the next multiple of `bucket`; padded slots point at token 0."""
  pos = np.asarray(gazing_pos, np.int64)
  pad = np.asarray(if_padded, bool)
  n_t = np.asarray(num_gazing_each_frame, np.int64)
  if pos.ndim != 2 or pad.shape != pos.shape or n_t.sum() != pos.shape[1]:
    raise ValueError(
      f"gazes: gazing_pos {pos.shape}, if_padded_gazing {pad.shape} and "
      f"sum(num_gazing_each_frame)={int(n_t.sum())} do not describe the same (B, N) slots"
    )
  b, n = pos.shape
  total = max(bucket, -(-n // bucket) * bucket)
  fid = np.repeat(np.arange(len(n_t)), n_t)
  out_pos = np.zeros((b, total), np.int32)
  out_pad = np.ones((b, total), bool)
  out_fid = np.full((b, total), len(n_t), np.int32)
  out_pos[:, :n] = np.where(pad, 0, pos)
  out_pad[:, :n] = pad
  out_fid[:, :n] = fid
  return out_pos, out_pad, out_fid


# What the rows of padded slots compute, as the official code's attention paths do: its sdpa
# masks (block-causal, frame-independent) let a padded slot see itself; its flash-attention
# path moves padded slots to the end, so in causal mode each sees every real slot and the
# padded ones before it, and in bidirectional mode (a padding mask, the variable-length
# kernel) its attention output is zero. Real slots never see padded ones in any mode; the rows
# matter only to the pooling head, which has no mask.
PAD_ROWS_OF_ATTN_TYPE = {"block_causal": "self", "frame_independent": "self", "causal": "last", "bidirectional": "zero"}


class GazedViT(FeatureViT):
  """FeatureViT's SigLIP embeddings and encoder plus the post-LayerNorm, fed gazed tokens."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    vit_config.validate(cfg)
    super().__init__(cfg, rngs)
    self.post_layernorm = layer_norm(cfg.hidden, cfg.eps, rngs)
    if cfg.get("pool_head", False):  # SigLIP's attention-pooling head (checkpoints that keep it)
      self.head = PoolingHead(cfg.hidden, cfg.heads, cfg.mlp, cfg.eps, rngs, cfg.approximate_gelu)

  @property
  def tokens_per_frame(self) -> int:
    return sum(vit_config.tokens_per_scale(self.cfg))

  def position_table(self):
    """(V, D): the learned table resized to each scale's grid, coarse -> fine."""
    return jnp.concatenate([self._pos_table(s // self.cfg.patch)[1] for s in self.cfg.scales], 0)

  def __call__(self, pixels_bt3hw, positions_bn, padded_bn, frame_ids_bn, attn_type=None):
    """pixels: (B, T, 3, H, W) in the ViT's own normalisation; positions: global ids
    t * V + local (padded slots any valid id); frame_ids: the frame of every slot.
    Returns last_hidden_state (B, N, D) after the post-LayerNorm."""
    x = mesh_lib.constrain(self.embed(pixels_bt3hw, positions_bn, padded_bn), ("batch", None, "act_embed"))
    attn_type = attn_type or self.cfg.attn_type
    ids, same = attention_rule(attn_type, frame_ids_bn)
    for block in self.blocks:
      x = block(x, ids, padded_bn, same, PAD_ROWS_OF_ATTN_TYPE[attn_type])
    return self.post_layernorm(x)

  def embed(self, pixels_bt3hw, positions_bn, padded_bn):
    """(B, N, D): the patch projection plus the position embedding of each gazed slot; a padded
    slot takes token 0 (frame 0's first coarse patch), as the official code."""
    b, t = pixels_bt3hw.shape[:2]
    v = self.tokens_per_frame
    patches = multiscale_patches(pixels_bt3hw, self.cfg.scales, self.cfg.patch).reshape(b, t * v, -1)
    idx = jnp.where(padded_bn, 0, positions_bn)
    return self.patch_proj(jnp.take_along_axis(patches, idx[..., None], axis=1)) + self.position_table()[idx % v]

  def pool(self, hidden_bnd, frame_ids_bn, num_frames: int):
    """The pooling head's output (B, D) over every slot of the official sequence, its padded
    slots included as the official head has no mask; only bucket padding (frame id T) is left out."""
    if not hasattr(self, "head"):
      raise ValueError("gazed ViT: this config has no pooling head (pool_head=False)")
    return self.head(hidden_bnd, frame_ids_bn < num_frames)

  def dense(self, pixels_n3hw):
    """The stock image ViT: every patch at the input's own resolution, full attention within
    each image, post-LayerNorm -> (N, patches, D). The baseline the gazed path is timed against."""
    n, _, h, w = pixels_n3hw.shape
    p = self.cfg.patch
    if h != w:
      raise ValueError(f"dense ViT: square images only, got {h}x{w}")
    x = self.patch_proj(patchify(pixels_n3hw, p)) + self._pos_table(h // p)[1]
    fid = jnp.zeros(x.shape[:2], jnp.int32)
    pad = jnp.zeros(x.shape[:2], bool)
    for block in self.blocks:
      x = block(x, fid, pad)
    return self.post_layernorm(x)
