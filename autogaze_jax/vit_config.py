"""Configs of the gazed SigLIP/SigLIP2 vision tower (TRAINING.md §9): widths, the
checkpoint's native image size, the multi-scale layout the gazes use, the attention type.

  tiny          test-sized widths, 224 px, scales 32+64+112+224 with 16-px patches (265/frame)
  base16_224    SigLIP2-B/16 at 224, scales 32+64+112+224 -> 4+16+49+196 = 265 per frame
  so400m14_384  SigLIP2-So400m/14-384 used at 392, scales 56+112+196+392 -> 1060 per frame
"""

from __future__ import annotations

import ml_collections

from autogaze_jax.models import feature_vit

ATTN_TYPES = ("block_causal", "causal", "bidirectional", "frame_independent")

# name: (hidden, layers, heads, mlp, patch, checkpoint image size, scales)
_VARIANTS = {
  "tiny": (32, 2, 2, 64, 16, 224, (32, 64, 112, 224)),
  "base16_224": (768, 12, 12, 3072, 16, 224, (32, 64, 112, 224)),
  "so400m14_384": (1152, 27, 16, 4304, 14, 384, (56, 112, 196, 392)),
}


def vit_config(name: str = "base16_224") -> ml_collections.ConfigDict:
  if name not in _VARIANTS:
    raise ValueError(f"vit config: unknown variant {name!r}; choose one of {sorted(_VARIANTS)}")
  hidden, layers, heads, mlp, patch, image, scales = _VARIANTS[name]
  c = feature_vit.siglip2_config("base")
  c.hidden, c.layers, c.heads, c.mlp, c.patch = hidden, layers, heads, mlp, patch
  c.image_size = image
  c.pos_grid = image // patch  # the checkpoint's learned (g^2, D) table
  c.scales = scales
  c.attn_type = "block_causal"
  c.token_bucket = 128  # gazed sequences are padded to a multiple of this (one compile per bucket)
  validate(c)
  return c


def tokens_per_scale(cfg) -> list[int]:
  return [(s // cfg.patch) ** 2 for s in cfg.scales]


def validate(cfg) -> None:
  """Raises ValueError naming the first inconsistent field."""
  if list(cfg.scales) != sorted(cfg.scales) or min(cfg.scales) < cfg.patch:
    raise ValueError(f"vit config: scales must be ascending and >= patch {cfg.patch}, got {tuple(cfg.scales)}")
  if cfg.attn_type not in ATTN_TYPES:
    raise ValueError(f"vit config: attn_type {cfg.attn_type!r} is not one of {ATTN_TYPES}")
  if cfg.hidden % cfg.heads:
    raise ValueError(f"vit config: hidden={cfg.hidden} is not divisible by heads={cfg.heads}")
  if cfg.token_bucket < 1:
    raise ValueError(f"vit config: token_bucket must be >= 1, got {cfg.token_bucket}")
