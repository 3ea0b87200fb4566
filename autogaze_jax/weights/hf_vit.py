"""HF-layout (transformers) ViT checkpoints -> our FeatureViT / GazedViT state: the DINOv2-with-
registers and SigLIP/SigLIP2 vision towers, SigLIP's pooling head and the gazed tower's
post-LayerNorm. Every name and shape is checked before anything is loaded."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models.feature_vit import FeatureViT
from autogaze_jax.models.gazed_vit import GazedViT
from autogaze_jax.weights import mapping


def weight_map(model: FeatureViT) -> dict:
  """{HF tensor name: (our parameter path, transform)} for this model's checkpoints."""
  if model.cfg.kind == "dinov2_reg":
    return _dinov2_map(model.cfg)
  m = _siglip_map(model.cfg)
  if isinstance(model, GazedViT):
    for part in ("weight", "bias"):
      key = "scale" if part == "weight" else "bias"
      m[f"vision_model.post_layernorm.{part}"] = (("post_layernorm", key), mapping.identity)
    if hasattr(model, "head"):
      m.update(pooling_head_map("vision_model.head.", ("head",)))
  return m


def _dinov2_map(cfg) -> dict:
  lin, same = mapping.linear_to_nnx, mapping.identity
  m = {
    "embeddings.cls_token": (("cls_token",), lambda w: w.reshape(1, -1)),
    "embeddings.register_tokens": (("register_tokens",), lambda w: w.reshape(cfg.registers, -1)),
    "embeddings.position_embeddings": (("pos_embed",), lambda w: w.reshape(w.shape[-2], -1)),
    "embeddings.patch_embeddings.projection.weight": (("patch_proj", "kernel"), mapping.patch_conv_to_linear),
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
  lin, same = mapping.linear_to_nnx, mapping.identity
  m = {src + "probe": (dst + ("probe",), same),
       src + "attention.in_proj_weight": (dst + ("in_proj", "kernel"), lin),
       src + "attention.in_proj_bias": (dst + ("in_proj", "bias"), same)}
  for a, b in (("attention.out_proj", "out_proj"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
    m[src + a + ".weight"], m[src + a + ".bias"] = (dst + (b, "kernel"), lin), (dst + (b, "bias"), same)
  m[src + "layernorm.weight"], m[src + "layernorm.bias"] = (dst + ("layernorm", "scale"), same), (dst + ("layernorm", "bias"), same)
  return m


def _siglip_map(cfg) -> dict:
  lin, same = mapping.linear_to_nnx, mapping.identity
  m = {
    "vision_model.embeddings.patch_embedding.weight": (("patch_proj", "kernel"), mapping.patch_conv_to_linear),
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
  names = weight_map(model)
  ours = {}
  for k, v in tensors.items():
    if prefix and not k.startswith(prefix):
      continue
    k = k[len(prefix) :]
    if any(k.startswith(u) or k.split(".", 1)[-1].startswith(u) for u in _UNUSED) and k not in names:
      continue
    ours[k] = np.asarray(v)
  state = nnx.state(model)
  arrays = mapping.convert(ours, names, mapping.expected_shapes(state))
  return mapping.load_into(state, arrays)


def build_gazed_vit(cfg, tensors: dict | None = None, mesh=None, seed: int = 0) -> GazedViT:
  """A GazedViT under `mesh` (sharded by the logical rules), with the vision tower of an
  HF SigLIP/SigLIP2 state dict when `tensors` are given (a text tower is ignored; every
  name and shape is checked before anything is allocated), else random weights."""
  mesh = mesh or mesh_lib.make_mesh()
  make = lambda: GazedViT(cfg, nnx.Rngs(seed))
  with mesh_lib.use(mesh):
    abstract_model = nnx.eval_shape(make)
    graphdef, abstract = nnx.split(abstract_model)
    shardings = nnx.get_named_sharding(abstract, mesh)
    if tensors is None:  # one compiled, sharded init instead of one dispatch per parameter
      state = jax.jit(lambda: nnx.state(make()), out_shardings=shardings)()
    else:
      vision = {k: v for k, v in tensors.items() if k.startswith("vision_model.")}
      state = jax.device_put(load_state(abstract_model, vision), shardings)
  return nnx.merge(graphdef, state)
