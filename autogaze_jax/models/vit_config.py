"""Configs of the ViT towers: the perceptual teachers (DINOv2-with-registers, SigLIP2; from
a transformers config with `config_from_hf`), and the gazed SigLIP/SigLIP2 vision tower
(docs/design.md, "Gazed ViT"): widths, the checkpoint's native image size, the multi-scale
layout the gazes use, the attention type.

  tiny          test-sized widths, 224 px, scales 32+64+112+224 with 16-px patches (265/frame)
  base16_224    SigLIP2-B/16 at 224, scales 32+64+112+224 -> 4+16+49+196 = 265 per frame
  so400m14_384  SigLIP2-So400m/14-384 used at 392, scales 56+112+196+392 -> 1060 per frame
"""

from __future__ import annotations

import ml_collections

# (hidden, layers, heads, mlp) of each size; the same for both families.
_WIDTHS = {"base": (768, 12, 12, 3072), "tiny": (32, 4, 2, 64)}


def _config(size: str, **fields) -> ml_collections.ConfigDict:
  hidden, layers, heads, mlp = _WIDTHS[size]
  return ml_collections.ConfigDict(dict(hidden=hidden, layers=layers, heads=heads, mlp=mlp, eps=1e-6, **fields))


def dinov2_reg_config(size: str = "base") -> ml_collections.ConfigDict:
  return _config(size, kind="dinov2_reg", patch=14, approximate_gelu=False, layer_scale=True, cls=True,
                 registers=4, pos_grid=37, pos_antialias=True, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225))


def siglip2_config(size: str = "base") -> ml_collections.ConfigDict:
  return _config(size, kind="siglip2", patch=16, approximate_gelu=True, layer_scale=False, cls=False,
                 registers=0, pos_grid=14, pos_antialias=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


_GELU_APPROXIMATE = {"gelu": False, "gelu_pytorch_tanh": True, "gelu_new": True}


def config_from_hf(hf: dict) -> ml_collections.ConfigDict:
  """A teacher config from a transformers config dict (its `config.json`):
  `dinov2_with_registers` or `siglip_vision_model` (the class the official loss loads its
  SigLIP2 teacher into). Sizes, eps, activation and the position grid come from the dict."""
  kind = hf.get("model_type")
  if kind not in ("dinov2_with_registers", "siglip_vision_model"):
    raise ValueError(f"teacher config: model_type {kind!r} is not 'dinov2_with_registers' or 'siglip_vision_model'")
  act = hf.get("hidden_act", "gelu")
  if act not in _GELU_APPROXIMATE:
    raise ValueError(f"teacher config: hidden_act {act!r} is not one of {sorted(_GELU_APPROXIMATE)}")
  try:
    base = dinov2_reg_config() if kind == "dinov2_with_registers" else siglip2_config()
    d = int(hf["hidden_size"])
    mlp = int(hf["intermediate_size"]) if "intermediate_size" in hf else int(d * hf["mlp_ratio"])
    base.update({"hidden": d, "layers": int(hf["num_hidden_layers"]), "heads": int(hf["num_attention_heads"]),
                 "mlp": mlp, "eps": float(hf["layer_norm_eps"]), "patch": int(hf["patch_size"]),
                 "pos_grid": int(hf["image_size"]) // int(hf["patch_size"]),
                 "approximate_gelu": _GELU_APPROXIMATE[act]})
    if kind == "dinov2_with_registers":
      base.registers = int(hf.get("num_register_tokens", 4))
    # transformers' full towers keep these; the perceptual losses do not use them
    base.final_norm = kind == "dinov2_with_registers"
    base.pool_head = kind == "siglip_vision_model" and bool(hf.get("vision_use_head", True))
  except KeyError as e:
    raise ValueError(f"teacher config: missing field {e}") from None
  return base


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
  c = siglip2_config("base")
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
