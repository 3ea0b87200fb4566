"""Generated clips for the embedded default and CPU-sized training: a smooth textured
background that may pan, one or two patterned objects moving in straight lines, and a
panel of fine stripes, so that motion and detail are where the information is. The scene
is a pure function of the seed."""

from __future__ import annotations

import numpy as np


def make_clip(num_frames: int = 16, size: int = 448, seed: int = 0) -> np.ndarray:
  """uint8 (T, size, size, 3)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  freq = rng.uniform(2, 9, 3)
  tint = rng.uniform(0.2, 0.6, 3)
  pan = rng.uniform(-0.01, 0.01, 2) * (rng.random() < 0.5)
  noise = rng.normal(0, 0.02, (size, size, 3)).astype(np.float32)
  objects = []
  for _ in range(rng.integers(1, 3)):
    side = int(size * rng.uniform(0.12, 0.25))
    cells = int(rng.integers(2, 7))
    checker = ((np.indices((side, side)) * cells // side).sum(0) % 2).astype(np.float32)
    start = rng.uniform(0.1, 0.9, 2)
    vel = rng.uniform(-0.03, 0.03, 2)
    objects.append((side, checker, start, vel, rng.uniform(0, 1, 3)))
  stripe_y = int(rng.integers(0, size * 3 // 4))
  stripe_h = size // 8
  stripe_f = rng.uniform(20, 50)
  frames = []
  for t in range(num_frames):
    ox, oy = pan * t
    f = np.stack([tint[c] + 0.12 * np.sin(freq[c] * (xx + ox + yy * (c - 1) + oy)) for c in range(3)], -1) + noise
    band = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx[stripe_y : stripe_y + stripe_h] * stripe_f + 0.03 * t)))
    f[stripe_y : stripe_y + stripe_h] = band[..., None] * 0.85 + 0.05
    for side, checker, start, vel, colour in objects:
      cy, cx = ((start + vel * t) % 1.0 * size).astype(int)
      y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
      y1, x1 = min(size, y0 + side), min(size, x0 + side)
      patch = checker[: y1 - y0, : x1 - x0, None]
      f[y0:y1, x0:x1] = patch * colour + (1 - patch) * 0.08
    frames.append(np.clip(f * 255, 0, 255).astype(np.uint8))
  return np.stack(frames)
