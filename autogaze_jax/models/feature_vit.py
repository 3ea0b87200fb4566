"""Frozen ViT feature extractors for the perceptual reconstruction losses (TRAINING.md §1.8):
DINOv2-with-registers (ViT-B/14) and the SigLIP2 vision tower (ViT-B/16), loaded from
HF-layout safetensors that a user supplies.

Features are the last 4 hidden states (block outputs before the final LayerNorm) of the
patch tokens, concatenated on channels: (N, patches, 4 * D).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from autogaze_jax import bicubic, preprocessing
from autogaze_jax import weight_mapping as wm
from autogaze_jax.models.patches import patchify
from autogaze_jax.models.vit_blocks import ViTBlock, _layer_norm, _linear

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


class FeatureViT(nnx.Module):
  def __init__(self, cfg, rngs: nnx.Rngs):
    self.cfg = cfg
    d = cfg.hidden
    self.patch_proj = _linear(3 * cfg.patch**2, d, ("conv_in", "embed"), rngs)
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
      self.layernorm = _layer_norm(d, cfg.eps, rngs)

  def _pos_table(self, grid: int):
    table = self.pos_embed[...]
    cls_row, patches = (table[:1], table[1:]) if self.cfg.cls else (None, table)
    g0 = self.cfg.pos_grid
    if grid != g0:
      mat = (bicubic.bicubic_matrix_antialias if self.cfg.pos_antialias else bicubic.bicubic_matrix)(g0, grid)
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
    mean = jnp.asarray(preprocessing.IMAGENET_MEAN)[:, None, None]
    std = jnp.asarray(preprocessing.IMAGENET_STD)[:, None, None]
    x255 = (task_pixels_n3hw * std + mean + 1.0) * 127.5
    tm = jnp.asarray(self.cfg.mean, jnp.float32)[:, None, None]
    ts = jnp.asarray(self.cfg.std, jnp.float32)[:, None, None]
    return (x255 / 255.0 - tm) / ts

  def __call__(self, task_pixels_n3hw):
    """Pixels in the task's space -> the perceptual features."""
    return self.features(self.from_task_space(task_pixels_n3hw))

  def weight_map(self) -> dict:
    """{HF tensor name: (our parameter path, transform)} for this model's checkpoints."""
    return _dinov2_map(self.cfg) if self.cfg.kind == "dinov2_reg" else _siglip_map(self.cfg)


def _dinov2_map(cfg) -> dict:
  lin, same = wm.linear_to_nnx, wm.identity
  m = {
    "embeddings.cls_token": (("cls_token",), lambda w: w.reshape(1, -1)),
    "embeddings.register_tokens": (("register_tokens",), lambda w: w.reshape(cfg.registers, -1)),
    "embeddings.position_embeddings": (("pos_embed",), lambda w: w.reshape(w.shape[-2], -1)),
    "embeddings.patch_embeddings.projection.weight": (("patch_proj", "kernel"), wm.patch_conv_to_linear),
    "embeddings.patch_embeddings.projection.bias": (("patch_proj", "bias"), same),
  }
  for i in range(cfg.layers):
    src, dst = f"encoder.layer.{i}.", ("blocks", i)
    pairs = {"norm1": ("layernorm_before",), "norm2": ("layernorm_after",), "mlp.fc1": ("fc1",),
             "mlp.fc2": ("fc2",), "attention.output.dense": ("attention", "out")}
    pairs.update({f"attention.attention.{q}": ("attention", q) for q in ("query", "key", "value")})
    for a, b in pairs.items():
      is_norm = a.startswith("norm")
      m[src + a + ".weight"] = (dst + b + ("scale" if is_norm else "kernel",), same if is_norm else lin)
      m[src + a + ".bias"] = (dst + b + ("bias",), same)
    m[src + "layer_scale1.lambda1"] = (dst + ("scale1",), same)
    m[src + "layer_scale2.lambda1"] = (dst + ("scale2",), same)
  if cfg.get("final_norm", False):
    m["layernorm.weight"], m["layernorm.bias"] = (("layernorm", "scale"), same), (("layernorm", "bias"), same)
  return m


def pooling_head_map(src: str, dst: tuple) -> dict:
  """HF names of SigLIP's pooling head (torch MultiheadAttention's fused in_proj) -> our paths."""
  lin, same = wm.linear_to_nnx, wm.identity
  m = {src + "probe": (dst + ("probe",), same),
       src + "attention.in_proj_weight": (dst + ("in_proj", "kernel"), lin),
       src + "attention.in_proj_bias": (dst + ("in_proj", "bias"), same)}
  for a, b in (("attention.out_proj", "out_proj"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
    m[src + a + ".weight"], m[src + a + ".bias"] = (dst + (b, "kernel"), lin), (dst + (b, "bias"), same)
  m[src + "layernorm.weight"], m[src + "layernorm.bias"] = (dst + ("layernorm", "scale"), same), (dst + ("layernorm", "bias"), same)
  return m


def _siglip_map(cfg) -> dict:
  lin, same = wm.linear_to_nnx, wm.identity
  m = {
    "vision_model.embeddings.patch_embedding.weight": (("patch_proj", "kernel"), wm.patch_conv_to_linear),
    "vision_model.embeddings.patch_embedding.bias": (("patch_proj", "bias"), same),
    "vision_model.embeddings.position_embedding.weight": (("pos_embed",), same),
  }
  for i in range(cfg.layers):
    src, dst = f"vision_model.encoder.layers.{i}.", ("blocks", i)
    pairs = {"layer_norm1": ("layernorm_before",), "layer_norm2": ("layernorm_after",),
             "mlp.fc1": ("fc1",), "mlp.fc2": ("fc2",), "self_attn.out_proj": ("attention", "out")}
    pairs.update({f"self_attn.{q[0]}_proj": ("attention", q) for q in ("query", "key", "value")})
    for a, b in pairs.items():
      is_norm = a.startswith("layer_norm")
      m[src + a + ".weight"] = (dst + b + ("scale" if is_norm else "kernel",), same if is_norm else lin)
      m[src + a + ".bias"] = (dst + b + ("bias",), same)
  return m


# Tensors of the HF checkpoints that the feature losses do not use.
_UNUSED = ("mask_token", "layernorm.", "post_layernorm", "vision_model.head.")


def load_state(model: FeatureViT, tensors: dict, prefix: str = ""):
  """HF-layout tensors (optionally under `prefix`, e.g. "dinov2_reg.") -> model state."""
  mapping = model.weight_map()
  ours = {}
  for k, v in tensors.items():
    if prefix and not k.startswith(prefix):
      continue
    k = k[len(prefix) :]
    if any(k.startswith(u) or k.split(".", 1)[-1].startswith(u) for u in _UNUSED) and k not in mapping:
      continue
    ours[k] = np.asarray(v)
  state = nnx.state(model)
  arrays = wm.convert(ours, mapping, wm.expected_shapes(state))
  return wm.load_into(state, arrays)
