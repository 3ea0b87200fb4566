"""Import of the official AutoGaze release: `config.json` -> config, `model.safetensors` ->
parameters (docs/design.md, "Weight import"). Every name and shape is checked; the first mismatch raises
with the parameter's name and both shapes.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from autogaze_jax.models import gaze_config
from autogaze_jax.weights import mapping

PREFIX = "gazing_model."


_transpose_conv = mapping.conv_to_nnx
_linear = mapping.linear_to_nnx
_same = mapping.identity


def _pointwise_conv(w):  # (O, I, 1, 1, 1) -> (I, O)
  return np.ascontiguousarray(w[:, :, 0, 0, 0].T)


def name_map(cfg) -> dict[str, tuple[tuple, callable]]:
  """Official key -> (our parameter path, transform)."""
  m = {
    "vision_model.temporal_conv.weight": (("vision_model", "patch_conv", "kernel"), _transpose_conv),
    "vision_model.temporal_conv.bias": (("vision_model", "patch_conv", "bias"), _same),
    "vision_model.norm.weight": (("vision_model", "norm", "scale"), _same),
    "vision_model.norm.bias": (("vision_model", "norm", "bias"), _same),
    "vision_model.out_proj.weight": (("vision_model", "out_proj", "kernel"), _pointwise_conv),
    "vision_model.out_proj.bias": (("vision_model", "out_proj", "bias"), _same),
    "connector.pos_embed": (("pos_embed",), _same),
    "gaze_decoder.model.embed_tokens.weight": (("gaze_decoder", "embed_tokens", "embedding"), _same),
    "gaze_decoder.model.norm.weight": (("gaze_decoder", "norm", "weight"), _same),
    "gaze_decoder.lm_head.weight": (("gaze_decoder", "lm_head", "kernel"), _linear),
    "gaze_decoder.task_loss_prediction_head.weight": (
      ("gaze_decoder", "task_loss_prediction_head", "kernel"), _linear),
  }
  for i in range(cfg.vision.depth):
    m[f"vision_model.blocks.{i}.conv3d.weight"] = (("vision_model", "blocks", i, "kernel"), _transpose_conv)
    m[f"vision_model.blocks.{i}.conv3d.bias"] = (("vision_model", "blocks", i, "bias"), _same)
  for l in range(cfg.decoder.num_layers):
    src, dst = f"gaze_decoder.model.layers.{l}.", ("gaze_decoder", "layers", l)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
      m[src + f"self_attn.{proj}.weight"] = (dst + ("self_attn", proj, "kernel"), _linear)
    for proj in ("gate_proj", "up_proj", "down_proj"):
      m[src + f"mlp.{proj}.weight"] = (dst + ("mlp", proj, "kernel"), _linear)
    for norm in ("input_layernorm", "post_attention_layernorm"):
      m[src + f"{norm}.weight"] = (dst + (norm, "weight"), _same)
  return {PREFIX + k: v for k, v in m.items()}


def convert_state_dict(tensors: dict[str, np.ndarray], expected_shapes: dict[tuple, tuple], cfg):
  """Official gaze-model tensors -> {our path: array}; raises on the first mismatch."""
  return mapping.convert(tensors, name_map(cfg), expected_shapes)


def config_from_official(hf: dict) -> ml_collections.ConfigDict:
  """Builds our config from the official `config.json` (save_pretrained layout)."""
  cfg = gaze_config.released_config()
  try:
    g = hf["gaze_model_config"]
    v, d = g["vision_model_config"], g["gaze_decoder_config"]
    cfg.scales = tuple(sorted(int(s) for s in str(hf["scales"]).split("+")))
    cfg.num_vision_tokens_each_frame = int(hf["num_vision_tokens_each_frame"])
    cfg.input_img_size = int(g["input_img_size"])
    for key in ("hidden_dim", "out_dim", "depth", "kernel_size", "temporal_patch_size",
                "trunk_temporal_kernel_size", "trunk_spatial_kernel_size"):
      cfg.vision[key] = int(v[key])
    cfg.decoder.hidden_size = int(d["hidden_size"])
    cfg.decoder.intermediate_size = int(d["intermediate_size"])
    cfg.decoder.num_layers = int(d["num_hidden_layers"])
    cfg.decoder.num_heads = int(d["num_attention_heads"])
    cfg.decoder.num_kv_heads = int(d.get("num_key_value_heads") or d["num_attention_heads"])
    cfg.decoder.head_dim = int(d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"])
    cfg.decoder.rms_norm_eps = float(d["rms_norm_eps"])
    cfg.decoder.rope_theta = float(d["rope_theta"])
    cfg.decoder.rope_scaling = ml_collections.ConfigDict(d["rope_scaling"] or {"rope_type": "default"})
    cfg.decoder.num_multi_token_pred = int(d.get("num_multi_token_pred", 1))
  except KeyError as e:
    raise ValueError(f"config.json: missing field {e} of the official AutoGaze layout") from None
  if "max_num_frames" in hf:
    cfg.max_num_frames = int(hf["max_num_frames"])
  ratio_cfg = hf.get("gazing_ratio_config") or {}
  if ratio_cfg.get("sample_strategy_during_inference", "fixed") == "fixed":
    cfg.inference.gazing_ratio = float(ratio_cfg.get("fixed", {}).get("gazing_ratio", 0.5))
  tl = hf.get("task_loss_requirement_config") or {}
  if hf.get("has_task_loss_requirement_during_inference", False):
    if tl.get("sample_strategy_during_inference", "fixed") != "fixed":
      raise ValueError("config.json: only a fixed inference task_loss_requirement is supported")
    cfg.inference.task_loss_requirement = float(tl.get("fixed", {}).get("task_loss_requirement", 0.7))
  else:
    cfg.inference.task_loss_requirement = None
  gaze_config.validate(cfg)
  return cfg


def find_files(path: str) -> tuple[str, str | None]:
  """(safetensors file, config.json or None) from a directory or a .safetensors path."""
  if os.path.isdir(path):
    st = os.path.join(path, "model.safetensors")
    if not os.path.exists(st):
      raise FileNotFoundError(f"checkpoint: no model.safetensors in {path}")
    cj = os.path.join(path, "config.json")
    return st, cj if os.path.exists(cj) else None
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint: {path} does not exist")
  cj = os.path.join(os.path.dirname(path) or ".", "config.json")
  return path, cj if os.path.exists(cj) else None


def read_config_json(path: str) -> ml_collections.ConfigDict:
  with open(path) as f:
    data = json.load(f)
  # The parity fixtures wrap the official JSON under "hf_config".
  return config_from_official(data.get("hf_config", data))


def load_gaze(path: str, mesh=None, seed: int = 0):
  """(config, GazeModel sharded over `mesh`) from our checkpoint directory, an official
  `model.safetensors` (+ `config.json`) file or directory, or a hub id such as
  "nvidia/AutoGaze" (needs huggingface_hub; offline, the local hub cache)."""
  from flax import nnx

  from autogaze_jax import checkpointing, hub
  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.models.gaze import GazeModel

  if hub.is_hub_id(path):
    path = hub.fetch(path)
  mesh = mesh or mesh_lib.make_mesh()
  if checkpointing.is_checkpoint(path):
    cfg = checkpointing.load_config(path)
  else:
    st_path, cfg_path = find_files(path)
    cfg = gaze_config.released_config() if cfg_path is None else read_config_json(cfg_path)
  gaze_config.validate(cfg)
  model = mesh_lib.build(lambda: GazeModel(cfg, nnx.Rngs(seed)), mesh)
  params = nnx.state(model, nnx.Param)
  if checkpointing.is_checkpoint(path):
    nnx.update(model, checkpointing.restore(path, checkpointing.abstract_like(params)))
    return cfg, model
  from safetensors.numpy import load_file

  try:
    tensors = load_file(st_path)
  except Exception as e:
    raise ValueError(f"checkpoint: cannot read {st_path}: {e}") from None
  arrays = convert_state_dict(tensors, mapping.expected_shapes(params), cfg)
  nnx.update(model, mapping.load_into(params, arrays))
  return cfg, model
