"""A generated sample clip for the embedded default: textured background, a moving
patterned object, and a panel of fine stripes, so there is motion and detail to gaze at."""

from __future__ import annotations

import numpy as np


def make_clip(num_frames: int = 16, size: int = 448, seed: int = 0) -> np.ndarray:
  """uint8 (T, size, size, 3)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  background = np.stack([0.35 + 0.1 * np.sin(6 * xx), 0.45 + 0.1 * np.cos(5 * yy),
                         0.4 + 0.05 * np.sin(9 * (xx + yy))], -1)
  background += rng.normal(0, 0.02, background.shape)
  obj = size // 5
  checker = ((np.indices((obj, obj)) // max(1, obj // 6)).sum(0) % 2).astype(np.float32)
  frames = []
  for t in range(num_frames):
    f = background.copy()
    # Fine detail: thin stripes that shift slowly (text-like texture).
    y0, x0 = size // 10, size // 2
    stripes = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx[y0 : y0 + size // 6, x0:] * 40 + t * 0.05)))
    f[y0 : y0 + size // 6, x0:] = stripes[..., None] * np.array([0.9, 0.9, 0.8])
    # A patterned object moving along a diagonal.
    cy = int(size * (0.25 + 0.5 * t / max(1, num_frames - 1)))
    cx = int(size * (0.2 + 0.4 * t / max(1, num_frames - 1)))
    ys, xs = slice(max(0, cy - obj // 2), min(size, cy + obj // 2)), slice(max(0, cx - obj // 2), min(size, cx + obj // 2))
    patch = checker[: ys.stop - ys.start, : xs.stop - xs.start]
    f[ys, xs] = patch[..., None] * np.array([1.0, 0.3, 0.2]) + (1 - patch[..., None]) * 0.1
    frames.append(np.clip(f * 255, 0, 255).astype(np.uint8))
  return np.stack(frames)
