"""Gazes in another ViT's token layout: `target_scales` / `target_patch_size` (docs/design.md,
"Target layouts").

A ViT with patch p whose frames are S = target_scales[-1] px (e.g. SigLIP2-So400m/14 at
392, scales 56+112+196+392) has F_s = s // p patches per side at each scale. The frame is
zero-padded (right, bottom, in normalised space) to nt x nt tiles of 14 p px (14 = the gaze
model's finest grid side), every tile is gazed as a clip of its own (resized to 224 inside
the gaze model), and each scale's tile masks are stitched into an (nt g_s)^2 grid and
cropped to F_s x F_s. Gazes in the padded border are dropped; coarse scales are cropped the
same way (geometrically approximate when there is padding), as the official code does.

The result uses the official post-adaptation format: within a frame the ids are ascending
(generation order is lost), frame t keeps c_t = the batch's largest count slots, padded
slots hold N' t - 1, and `log_action_probs` / `task_loss_prediction` are absent.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from autogaze_jax import vocab as vocab_lib


@dataclasses.dataclass(frozen=True)
class TargetLayout:
  """A target ViT's multi-scale layout seen through the gaze model's tiles."""

  scales: tuple  # the target ViT's scales, ascending (px)
  patch: int  # the target ViT's patch size (px)
  gaze_sides: tuple  # the gaze model's grid side per scale, e.g. (2, 4, 7, 14)

  @property
  def sides(self) -> tuple:  # F_s
    return tuple(s // self.patch for s in self.scales)

  @property
  def tiles_per_side(self) -> int:  # nt
    return math.ceil(self.sides[-1] / self.gaze_sides[-1])

  @property
  def tile_px(self) -> int:
    return self.gaze_sides[-1] * self.patch

  @property
  def pad(self) -> int:
    return self.tiles_per_side * self.tile_px - self.scales[-1]

  @property
  def tokens_per_frame(self) -> int:  # N'
    return sum(f * f for f in self.sides)


def layout_for(gaze_cfg, target_scales, target_patch_size: int) -> TargetLayout:
  scales = tuple(int(s) for s in target_scales)
  p = int(target_patch_size)
  sides = tuple(vocab_lib.grid_sides(gaze_cfg.scales, gaze_cfg.num_vision_tokens_each_frame))
  if len(scales) != len(sides):
    raise ValueError(
      f"target_scales: {len(scales)} scales given, the gaze model has {len(sides)} ({tuple(gaze_cfg.scales)})"
    )
  if list(scales) != sorted(scales) or p < 1 or scales[0] < p:
    raise ValueError(f"target_scales: {scales} must be ascending and >= target_patch_size={p}")
  return TargetLayout(scales, p, sides)


def needs_adaptation(gaze_cfg, target_scales, target_patch_size: int) -> bool:
  """False when the target layout is the gaze model's own (then its outputs are used as they
  are). The official code compares lists, so a tuple always adapts; we compare values."""
  own = vocab_lib.tokens_per_scale(gaze_cfg.scales, gaze_cfg.num_vision_tokens_each_frame)
  counts = [(int(s) // int(target_patch_size)) ** 2 for s in target_scales]
  return not (tuple(int(s) for s in target_scales) == tuple(gaze_cfg.scales) and counts == own)


def split_tiles(video_bt3hw: np.ndarray, layout: TargetLayout) -> np.ndarray:
  """(B, T, C, S, S) normalised video -> (B nt^2, T, C, 14p, 14p) tiles, clip-major, then
  tile row, then tile column; the right and bottom border is zero-padded."""
  v = np.asarray(video_bt3hw)
  size = layout.scales[-1]
  if v.ndim != 5 or v.shape[-2:] != (size, size):
    raise ValueError(f"target_scales: the video must be (B, T, C, {size}, {size}) (the largest target scale), got {v.shape}")
  b, t, c = v.shape[:3]
  nt, tp = layout.tiles_per_side, layout.tile_px
  v = np.pad(v, ((0, 0),) * 3 + ((0, layout.pad),) * 2)
  v = v.reshape(b, t, c, nt, tp, nt, tp).transpose(0, 3, 5, 1, 2, 4, 6)
  return v.reshape(b * nt * nt, t, c, tp, tp)


def merge_masks(tile_masks: list, layout: TargetLayout) -> list:
  """Per gaze scale (B nt^2, T, g_s^2) tile masks -> per target scale (B, T, F_s^2) masks."""
  nt = layout.tiles_per_side
  out = []
  for m, g, f in zip(tile_masks, layout.gaze_sides, layout.sides):
    m = np.asarray(m)
    b = m.shape[0] // (nt * nt)
    t = m.shape[1]
    grid = m.reshape(b, nt, nt, t, g, g).transpose(0, 3, 1, 4, 2, 5).reshape(b, t, nt * g, nt * g)
    out.append(grid[:, :, :f, :f].reshape(b, t, f * f))
  return out


def masks_to_gazes(masks: list, layout: TargetLayout) -> dict:
  """Per-scale (B, T, F_s^2) 0/1 masks -> official gazes in the N'-token layout."""
  full = np.concatenate([np.asarray(m) for m in masks], -1) > 0  # (B, T, N')
  b, t, n = full.shape
  counts = full.sum(-1)  # (B, T)
  c = counts.max(0) if b else np.zeros((t,), np.int64)
  pos, pad = [], []
  for ti in range(t):
    ids = np.full((b, c[ti]), -1, np.int64)
    for bi in range(b):
      real = np.flatnonzero(full[bi, ti])
      ids[bi, : len(real)] = real
    pad.append(ids < 0)
    pos.append(ids + n * ti)
  return {
    "gazing_pos": np.concatenate(pos, 1) if t else np.zeros((b, 0), np.int64),
    "if_padded_gazing": np.concatenate(pad, 1) if t else np.zeros((b, 0), bool),
    "num_gazing_each_frame": c.astype(np.int64),
    "num_real_gazing_each_frame": counts.astype(np.int64),
    "gazing_mask": [np.asarray(m, np.float32) for m in masks],
    "num_vision_tokens_each_frame": n,
  }


def gaze(gazer, video_bt3hw, target_scales, target_patch_size: int, gazing_ratio=None,
         task_loss_requirement=None, **gaze_kwargs) -> dict:
  """`AutoGaze.gaze` with the official `target_scales` / `target_patch_size` semantics.

  video: float32 (B, T, 3, S, S) preprocessed (S = the largest target scale). Budgets and
  the task-loss requirement apply per tile. Returns the gaze model's output unchanged when
  the layouts agree, else the adapted output (module docstring)."""
  cfg = gazer.config
  if not needs_adaptation(cfg, target_scales, target_patch_size):
    return gazer.gaze(video_bt3hw, gazing_ratio, task_loss_requirement, **gaze_kwargs)
  layout = layout_for(cfg, target_scales, target_patch_size)
  tiles = split_tiles(video_bt3hw, layout)
  eps = task_loss_requirement
  if eps is not None and np.ndim(eps) == 2:  # one row per clip -> one per tile
    eps = np.repeat(np.asarray(eps), layout.tiles_per_side**2, axis=0)
  out = gazer.gaze(tiles, gazing_ratio, eps, **{"generate_only": True, **gaze_kwargs})
  adapted = masks_to_gazes(merge_masks(out["gazing_mask"], layout), layout)
  for key in ("scales", "frame_sampling_rate", "has_task_loss_requirement"):
    adapted[key] = out[key]
  tlr = out["task_loss_requirement"]
  adapted["task_loss_requirement"] = None if tlr is None else tlr[:: layout.tiles_per_side**2]
  return adapted
