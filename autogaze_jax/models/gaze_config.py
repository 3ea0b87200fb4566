"""Model configuration: the released AutoGaze architecture, small variants, validation.

Configs are `ml_collections.ConfigDict`s. `configs/gaze.py` exposes them as `get_config()`
files; this module holds the defaults so an installed package needs no repo checkout.
"""

from __future__ import annotations

import ml_collections

# The vocabulary's PAD/EOS id is always `num_vision_tokens_each_frame` (265 in the release).


def released_config() -> ml_collections.ConfigDict:
  """The architecture of the released `nvidia/AutoGaze` checkpoint (3,258,240 params)."""
  c = ml_collections.ConfigDict()
  c.scales = (32, 64, 112, 224)
  c.num_vision_tokens_each_frame = 265
  c.input_img_size = 224
  c.max_num_frames = 16

  c.vision = ml_collections.ConfigDict()
  c.vision.hidden_dim = 192
  c.vision.out_dim = 192
  c.vision.depth = 1
  c.vision.kernel_size = 16
  c.vision.temporal_patch_size = 1
  c.vision.trunk_temporal_kernel_size = 3
  c.vision.trunk_spatial_kernel_size = 3
  c.vision.layernorm_eps = 1e-5

  c.decoder = ml_collections.ConfigDict()
  c.decoder.hidden_size = 192
  c.decoder.intermediate_size = 384
  c.decoder.num_layers = 4
  c.decoder.num_heads = 6
  c.decoder.num_kv_heads = 6
  c.decoder.head_dim = 32
  c.decoder.rms_norm_eps = 1e-5
  c.decoder.rope_theta = 500000.0
  c.decoder.rope_scaling = ml_collections.ConfigDict(
    dict(
      rope_type="llama3",
      factor=8.0,
      low_freq_factor=1.0,
      high_freq_factor=4.0,
      original_max_position_embeddings=8192,
    )
  )
  c.decoder.num_multi_token_pred = 10

  # Defaults used when a caller passes neither a gazing ratio nor a task-loss requirement
  # (docs/design.md, "The gaze call"; inference mode of the released config).
  c.inference = ml_collections.ConfigDict()
  c.inference.gazing_ratio = 0.75
  c.inference.task_loss_requirement = 0.7  # None disables task-loss stopping by default.

  # Matmul precision for parity: XLA's default on GPU/TPU is not fp32.
  c.matmul_precision = "highest"
  return c


def tiny_config() -> ml_collections.ConfigDict:
  """A test-sized gaze model: 64-px frames, two scales, K=3, two decoder layers."""
  c = released_config()
  c.scales = (32, 64)
  c.num_vision_tokens_each_frame = 20
  c.input_img_size = 64
  c.vision.hidden_dim = 32
  c.vision.out_dim = 32
  c.decoder.hidden_size = 32
  c.decoder.intermediate_size = 64
  c.decoder.num_layers = 2
  c.decoder.num_heads = 4
  c.decoder.num_kv_heads = 2
  c.decoder.head_dim = 8
  c.decoder.num_multi_token_pred = 3
  c.inference.gazing_ratio = 0.5
  c.inference.task_loss_requirement = None
  return c


def vision_tokens_per_frame(cfg) -> int:
  """Conv tokens per frame, e.g. (224 / 16)^2 = 196."""
  side = cfg.input_img_size // cfg.vision.kernel_size
  return side * side


def validate(cfg) -> None:
  """Raises ValueError naming the first inconsistent field."""
  d = cfg.decoder
  if cfg.input_img_size % cfg.vision.kernel_size:
    raise ValueError(
      f"config: input_img_size={cfg.input_img_size} is not a multiple of "
      f"vision.kernel_size={cfg.vision.kernel_size}"
    )
  if cfg.vision.out_dim != d.hidden_size:
    raise ValueError(
      f"config: vision.out_dim={cfg.vision.out_dim} must equal decoder.hidden_size={d.hidden_size}"
    )
  if d.num_heads * d.head_dim != d.hidden_size:
    raise ValueError(
      f"config: decoder.num_heads*head_dim={d.num_heads * d.head_dim} != hidden_size={d.hidden_size}"
    )
  if d.num_heads % d.num_kv_heads:
    raise ValueError(f"config: num_heads={d.num_heads} not divisible by num_kv_heads={d.num_kv_heads}")
  if d.head_dim % 2:
    raise ValueError(f"config: decoder.head_dim={d.head_dim} must be even for RoPE")
  if cfg.vision.temporal_patch_size != 1:
    raise ValueError("config: only vision.temporal_patch_size=1 is supported (as released)")
  k = d.num_multi_token_pred
  if not 1 <= k <= cfg.num_vision_tokens_each_frame:
    raise ValueError(f"config: decoder.num_multi_token_pred={k} out of range [1, vocab]")
  if vision_tokens_per_frame(cfg) < k:
    raise ValueError(
      f"config: {vision_tokens_per_frame(cfg)} vision tokens per frame < K={k}; the decode "
      "positions of the official model need at least K prompt tokens"
    )
  if sorted(cfg.scales) != list(cfg.scales):
    raise ValueError(f"config: scales must be ascending, got {tuple(cfg.scales)}")
