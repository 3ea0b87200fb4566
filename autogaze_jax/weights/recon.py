"""Import of the official reconstructor (`videomae.pt` or the same state dict as
`.safetensors`; docs/design.md, "Weight import"). Prefixes `module.` / `mae.` are stripped; the perceptual
teachers' sub-trees (`dinov2_reg.`, `siglip2.`) are returned separately.
"""

from __future__ import annotations

import os

import numpy as np

from autogaze_jax.weights import mapping

TEACHER_PREFIXES = ("dinov2_reg.", "siglip2.")


def _block_map(src: str, dst: tuple) -> dict:
  m = {
    "layernorm_before.weight": ("layernorm_before", "scale"), "layernorm_before.bias": ("layernorm_before", "bias"),
    "layernorm_after.weight": ("layernorm_after", "scale"), "layernorm_after.bias": ("layernorm_after", "bias"),
    "intermediate.dense.weight": ("fc1", "kernel"), "intermediate.dense.bias": ("fc1", "bias"),
    "output.dense.weight": ("fc2", "kernel"), "output.dense.bias": ("fc2", "bias"),
    "attention.output.dense.weight": ("attention", "out", "kernel"),
    "attention.output.dense.bias": ("attention", "out", "bias"),
  }
  for qkv in ("query", "key", "value"):
    m[f"attention.attention.{qkv}.weight"] = ("attention", qkv, "kernel")
    m[f"attention.attention.{qkv}.bias"] = ("attention", qkv, "bias")
  return {src + k: (dst + v, mapping.linear_to_nnx if v[-1] == "kernel" else mapping.identity) for k, v in m.items()}


def name_map(cfg) -> dict:
  same = mapping.identity
  m = {
    "vit.embeddings.cls_token": (("cls_token",), same),
    "vit.embeddings.position_embeddings": (("position_embeddings",), same),
    "vit.embeddings.scale_embed": (("scale_embed",), same),
    "vit.embeddings.time_embed": (("time_embed",), same),
    "vit.embeddings.patch_embeddings.projection.weight": (("patch_proj", "kernel"), mapping.patch_conv_to_linear),
    "vit.embeddings.patch_embeddings.projection.bias": (("patch_proj", "bias"), same),
    "vit.layernorm.weight": (("layernorm", "scale"), same),
    "vit.layernorm.bias": (("layernorm", "bias"), same),
    "decoder.decoder_embed.weight": (("decoder_embed", "kernel"), mapping.linear_to_nnx),
    "decoder.decoder_embed.bias": (("decoder_embed", "bias"), same),
    "decoder.mask_token": (("mask_token",), same),
    "decoder.decoder_pos_embed": (("decoder_pos_embed",), same),
    "decoder.decoder_scale_embed": (("decoder_scale_embed",), same),
    "decoder.time_embed": (("decoder_time_embed",), same),
    "decoder.decoder_norm.weight": (("decoder_norm", "scale"), same),
    "decoder.decoder_norm.bias": (("decoder_norm", "bias"), same),
    "decoder.decoder_pred.weight": (("decoder_pred", "kernel"), mapping.linear_to_nnx),
    "decoder.decoder_pred.bias": (("decoder_pred", "bias"), same),
  }
  for i in range(cfg.num_layers):
    m.update(_block_map(f"vit.encoder.layer.{i}.", ("layers", i)))
  for j in range(cfg.decoder_num_layers):
    m.update(_block_map(f"decoder.decoder_layers.{j}.", ("decoder_layers", j)))
  return m


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads `.safetensors`, or a torch pickle when torch is installed."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"reconstructor checkpoint: {path} does not exist")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file

    try:
      return load_file(path)
    except Exception as e:
      raise ValueError(f"reconstructor checkpoint: cannot read {path}: {e}") from None
  try:
    import torch
  except ImportError:
    raise ValueError(
      f"reconstructor checkpoint: {path} is a PyTorch file; reading it needs torch "
      "(pip install torch), or convert it to .safetensors first"
    ) from None
  sd = torch.load(path, map_location="cpu", weights_only=True)
  sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
  return {k: v.detach().float().numpy() for k, v in sd.items()}


def split_official(tensors: dict) -> tuple[dict, dict]:
  """Strips `module.`/`mae.`; returns (reconstructor tensors, teacher tensors)."""
  mae, teachers = {}, {}
  for k, v in tensors.items():
    for prefix in ("module.", "mae."):
      if k.startswith(prefix):
        k = k[len(prefix) :]
    (teachers if k.startswith(TEACHER_PREFIXES) else mae)[k] = v
  return mae, teachers


def convert(tensors: dict, expected_shapes: dict, cfg) -> dict:
  mae, _ = split_official(tensors)
  return mapping.convert(mae, name_map(cfg), expected_shapes)


def config_from_hf(kwargs: dict):
  """Our config from ViTMAEConfig-style kwargs (e.g. the official task's constructor args)."""
  from autogaze_jax.models import recon_config

  c = recon_config.recon_config("tiny")
  fields = {
    "hidden_size": "hidden_size", "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads", "intermediate_size": "intermediate_size",
    "decoder_hidden_size": "decoder_hidden_size", "decoder_num_hidden_layers": "decoder_num_layers",
    "decoder_num_attention_heads": "decoder_num_heads",
    "decoder_intermediate_size": "decoder_intermediate_size", "patch_size": "patch_size",
    "max_num_frames": "max_num_frames", "layer_norm_eps": "layer_norm_eps",
  }
  for src, dst in fields.items():
    if src in kwargs:
      c[dst] = type(c[dst])(kwargs[src])
  if "scales" in kwargs:
    c.scales = tuple(sorted(int(s) for s in str(kwargs["scales"]).split("+")))
  recon_config.validate(c)
  return c


def load(path: str, cfg, mesh=None):
  """A Reconstructor with the official weights at `path` (built under `mesh`)."""
  from flax import nnx

  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.models.reconstructor import Reconstructor

  mesh = mesh or mesh_lib.make_mesh()
  build = lambda: Reconstructor(cfg, nnx.Rngs(0))
  with mesh_lib.use(mesh):
    # The file is checked against the model's shapes before any weight is initialised, so
    # a file that does not fit the config fails at once, however large the model.
    arrays = convert(read_state_dict(path), mapping.expected_shapes(nnx.state(nnx.eval_shape(build))), cfg)
  model = mesh_lib.build(build, mesh)
  nnx.update(model, mapping.load_into(nnx.state(model), arrays))
  return model


def load_dir(path: str, mesh=None):
  """A Reconstructor from an official-layout directory: `model.safetensors` or `videomae.pt`
  (the task's state dict) beside the `config.json` that ViTMAEConfig.save_pretrained writes."""
  import json

  cfg_path = os.path.join(path, "config.json")
  weights = [os.path.join(path, f) for f in ("model.safetensors", "videomae.pt") if os.path.isfile(os.path.join(path, f))]
  if not weights or not os.path.isfile(cfg_path):
    raise ValueError(f"reconstructor checkpoint: {path} needs config.json and model.safetensors or videomae.pt")
  try:
    with open(cfg_path) as f:
      hf = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"reconstructor checkpoint: {cfg_path} is not valid JSON: {e}") from None
  return load(weights[0], config_from_hf(hf), mesh)
