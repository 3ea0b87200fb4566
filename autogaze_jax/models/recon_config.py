"""Reconstructor (VideoMAE-AG) configs: tiny (tests, CPU training), base, large (official)."""

from __future__ import annotations

import ml_collections


def recon_config(size: str = "tiny") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.scales = (32, 64, 112, 224)
  c.patch_size = 16
  c.max_num_frames = 256
  c.layer_norm_eps = 1e-12
  c.recon_sample_rate = 0.125
  # Side of the fixed sin-cos position grid; 0 = official 224 // patch_size (14). The decoder
  # resizes this table in 1-D (an official quirk, kept for parity), which scrambles the x
  # positions of any scale with fewer tokens than the grid; configs whose finest scale is
  # below 224 px (tiny: 64 px) set it to finest_scale // patch_size so their canvas is exact.
  c.pos_grid = 0
  # Rematerialise each transformer block in training (recompute its activations in the
  # backward pass): the large model's per-clip temporaries otherwise exceed a 16 GiB chip.
  c.remat = size in ("base", "large")
  sizes = {
    # hidden, layers, heads, mlp | decoder hidden, layers, heads, mlp
    "tiny": (192, 2, 3, 768, 128, 1, 4, 512),
    "base": (768, 12, 12, 3072, 512, 8, 16, 2048),
    "large": (1024, 24, 16, 4096, 512, 8, 16, 2048),
  }
  if size not in sizes:
    raise ValueError(f"reconstructor size {size!r} unknown; choose one of {sorted(sizes)}")
  (c.hidden_size, c.num_layers, c.num_heads, c.intermediate_size, c.decoder_hidden_size,
   c.decoder_num_layers, c.decoder_num_heads, c.decoder_intermediate_size) = sizes[size]
  return c


def validate(c) -> None:
  if sorted(c.scales) != list(c.scales):
    raise ValueError(f"reconstructor: scales must be ascending, got {tuple(c.scales)}")
  for s in c.scales:
    if s % c.patch_size:
      raise ValueError(f"reconstructor: scale {s} is not a multiple of patch_size={c.patch_size}")
  if c.hidden_size % c.num_heads or c.decoder_hidden_size % c.decoder_num_heads:
    raise ValueError("reconstructor: hidden sizes must be divisible by their head counts")
  if not 0 < c.recon_sample_rate <= 1:
    raise ValueError(f"reconstructor: recon_sample_rate must be in (0, 1], got {c.recon_sample_rate}")


def pos_grid(c) -> int:
  """The position grid side (configs saved before the field existed use the official 14)."""
  return c.get("pos_grid", 0) or 224 // c.patch_size


def tokens_per_scale(c) -> list[int]:
  return [(s // c.patch_size) ** 2 for s in c.scales]
