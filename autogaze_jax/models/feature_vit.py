"""Frozen ViT feature extractors for the perceptual reconstruction losses (docs/design.md, "Perceptual teachers"):
DINOv2-with-registers (ViT-B/14) and the SigLIP2 vision tower (ViT-B/16), loaded from
HF-layout safetensors that a user supplies.

Features are the last 4 hidden states (block outputs before the final LayerNorm) of the
patch tokens, concatenated on channels: (N, patches, 4 * D).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax.models.patches import patchify
from autogaze_jax.models.vit_blocks import ViTBlock, layer_norm, linear


class FeatureViT(nnx.Module):
  def __init__(self, cfg, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.hidden
    self.patch_proj = linear(3 * cfg.patch**2, d, ("conv_in", "embed"), rngs)
    n_pos = cfg.pos_grid**2 + (1 if cfg.cls else 0)
    rows = lambda n: nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (n, d)), out_sharding=(None, "embed"))
    self.pos_embed = rows(n_pos)
    if cfg.cls:
      self.cls_token = rows(1)
    if cfg.registers:
      self.register_tokens = rows(cfg.registers)
    self.blocks = nnx.List([
      ViTBlock(d, cfg.heads, cfg.mlp, cfg.eps, rngs, cfg.approximate_gelu, cfg.layer_scale)
      for _ in range(cfg.layers)
    ])
    if cfg.kind == "dinov2_reg" and cfg.get("final_norm", False):  # not used by the losses
      self.layernorm = layer_norm(d, cfg.eps, rngs)

  def _pos_table(self, grid: int):
    table = self.pos_embed[...]
    cls_row, patches = (table[:1], table[1:]) if self.cfg.cls else (None, table)
    g0 = self.cfg.pos_grid
    if grid != g0:
      mat = (image_lib.bicubic_matrix_antialias if self.cfg.pos_antialias else image_lib.bicubic_matrix)(g0, grid)
      m = jnp.asarray(mat)
      patches = jnp.einsum("ih,hwd,jw->ijd", m, patches.reshape(g0, g0, -1), m).reshape(grid * grid, -1)
    return cls_row, patches

  def hidden_states(self, pixels_n3hw) -> list:
    """Pixels already in the teacher's own normalisation -> [embeddings, block 1, ..., block L],
    each (N, prefix + patches, D) with the prefix tokens (DINOv2: CLS, then the registers)
    first, as transformers' `output_hidden_states` (no final LayerNorm)."""
    n, _, h, w = pixels_n3hw.shape
    gh = h // self.cfg.patch
    x = self.patch_proj(patchify(pixels_n3hw, self.cfg.patch))
    cls_row, pos = self._pos_table(gh)
    x = x + pos
    prefix = []
    if self.cfg.cls:
      prefix.append(jnp.broadcast_to(self.cls_token[...] + cls_row, (n, 1, x.shape[-1])))
    if self.cfg.registers:
      prefix.append(jnp.broadcast_to(self.register_tokens[...], (n, self.cfg.registers, x.shape[-1])))
    x = jnp.concatenate(prefix + [x], 1)
    fid = jnp.zeros(x.shape[:2], jnp.int32)
    pad = jnp.zeros(x.shape[:2], bool)
    hidden = [x]
    for block in self.blocks:
      x = block(x, fid, pad)
      hidden.append(x)
    return hidden

  def last_hidden_state(self, pixels_n3hw):
    """DINOv2 with its final LayerNorm (config final_norm): every token after the norm, as
    transformers' `last_hidden_state`; its CLS row is the pooled output."""
    if not hasattr(self, "layernorm"):
      raise ValueError("feature ViT: no final LayerNorm in this config (final_norm=False)")
    return self.layernorm(self.hidden_states(pixels_n3hw)[-1])

  def num_prefix_tokens(self) -> int:
    return int(self.cfg.cls) + int(self.cfg.registers)

  def features(self, pixels_n3hw):
    """Pixels already in the teacher's own normalisation -> (N, patches, 4 * D): the last 4
    hidden states of the patch tokens (the official perceptual losses' features)."""
    skip = self.num_prefix_tokens()
    return jnp.concatenate([x[:, skip:] for x in self.hidden_states(pixels_n3hw)[-4:]], -1)

  def from_task_space(self, task_pixels_n3hw):
    """Pixels in the task's double-normalised space -> the teacher's own normalisation (the
    official retransform: back to [0, 255] without clamping, then x / 255 and mean/std)."""
    mean = jnp.asarray(image_lib.IMAGENET_MEAN)[:, None, None]
    std = jnp.asarray(image_lib.IMAGENET_STD)[:, None, None]
    x255 = (task_pixels_n3hw * std + mean + 1.0) * 127.5
    tm = jnp.asarray(self.cfg.mean, jnp.float32)[:, None, None]
    ts = jnp.asarray(self.cfg.std, jnp.float32)[:, None, None]
    return (x255 / 255.0 - tm) / ts

  def __call__(self, task_pixels_n3hw):
    """Pixels in the task's space -> the perceptual features."""
    return self.features(self.from_task_space(task_pixels_n3hw))
