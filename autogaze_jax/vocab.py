"""The multi-scale gaze vocabulary and per-frame budgets (docs/design.md, "Vocabulary and budgets").

A frame's local ids are scale-major, coarse to fine, row-major inside a scale; id V (265 in
the release) is PAD/EOS. Global ids are `t * V + local`.
"""

from __future__ import annotations

import math

import numpy as np


def tokens_per_scale(scales, vocab: int) -> list[int]:
  """n_s = int(s^2 / sum(s'^2) * V) in float64 with truncation, as the official code."""
  total = float(sum(s * s for s in scales))
  return [int(s * s / total * vocab) for s in scales]


def scale_offsets(scales, vocab: int) -> list[int]:
  counts = tokens_per_scale(scales, vocab)
  return [int(x) for x in np.cumsum([0] + counts[:-1])]


def grid_sides(scales, vocab: int) -> list[int]:
  return [int(n**0.5) for n in tokens_per_scale(scales, vocab)]


def check_gazing_ratio(ratio, num_frames: int) -> np.ndarray:
  """Validates a scalar or per-frame ratio and returns float32 ratios of shape (T,)."""
  r = np.asarray(ratio, dtype=np.float64)
  if r.ndim == 0:
    r = np.full((num_frames,), float(r))
  if r.ndim != 1 or r.shape[0] != num_frames:
    raise ValueError(
      f"gazing_ratio: expected one number or {num_frames} per-frame numbers, got shape {r.shape}"
    )
  if not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(r > 1):
    raise ValueError(f"gazing_ratio: every value must be in (0, 1], got {r.tolist()}")
  return r.astype(np.float32)


def budgets_from_ratio(ratio, num_frames: int, vocab: int) -> np.ndarray:
  """Per-frame gaze budget int(float32(r) * V), at least 1 (0.75 -> 198, 0.1 -> 26)."""
  r = check_gazing_ratio(ratio, num_frames)
  b = (r * np.float32(vocab)).astype(np.int64)  # truncation toward zero, in float32
  return np.maximum(b, 1).astype(np.int32)


def slots_per_frame(max_budget: int, k: int) -> int:
  """Static gaze slots allocated per frame: whole decode steps of K covering the budget."""
  return k * math.ceil(max_budget / k)


def check_task_loss_requirement(eps, batch: int, num_frames: int):
  """None, a scalar, (T,) per frame or (B, T) per clip and frame -> float32 (B, T) or None."""
  if eps is None:
    return None
  e = np.asarray(eps, dtype=np.float32)
  if e.ndim == 0:
    e = np.full((batch, num_frames), e, np.float32)
  elif e.ndim == 1 and e.shape[0] == num_frames:
    e = np.broadcast_to(e[None], (batch, num_frames)).copy()
  elif e.shape != (batch, num_frames):
    raise ValueError(
      "task_loss_requirement: expected a number, one per frame "
      f"({num_frames},) or one per clip and frame ({batch}, {num_frames}); got shape {e.shape}"
    )
  if not np.all(np.isfinite(e)):
    raise ValueError("task_loss_requirement: values must be finite numbers")
  return e


def gazing_masks(local_ids: np.ndarray, scales, vocab: int) -> list[np.ndarray]:
  """Per-scale 0/1 masks (B, T, n_s) from local ids (B, T, S); PAD (= vocab) is ignored."""
  b, t, _ = local_ids.shape
  m = np.zeros((b, t, vocab + 1), np.float32)
  bi, ti, _ = np.indices(local_ids.shape)
  m[bi, ti, np.asarray(local_ids)] = 1.0
  m = m[..., :vocab]
  offs, counts = scale_offsets(scales, vocab), tokens_per_scale(scales, vocab)
  return [m[..., o : o + n] for o, n in zip(offs, counts)]
