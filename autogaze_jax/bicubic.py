"""PyTorch-compatible bicubic resize (`F.interpolate(mode="bicubic", align_corners=False)`).

Implemented as static (out x in) matrices per axis (GAZE_MODEL.md §3.2): A = -0.75, no
antialiasing, taps clamped to the border, no clipping of the output. `jax.image.resize`
antialiases and uses a different kernel, so it is not equivalent.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

_A = -0.75


def _cubic_weights(t: np.ndarray) -> np.ndarray:
  """Weights of the taps x0-1, x0, x0+1, x0+2 for fractional offsets t, shape (n, 4)."""
  a = _A
  w_m1 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
  w_0 = ((a + 2) * t - (a + 3)) * t * t + 1
  u = 1 - t
  w_p1 = ((a + 2) * u - (a + 3)) * u * u + 1
  w_p2 = ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a
  return np.stack([w_m1, w_0, w_p1, w_p2], axis=-1)


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """float32 (out, in) matrix M with resized = M @ x along one axis; identity if equal."""
  if in_size == out_size:
    return np.eye(in_size, dtype=np.float32)
  # PyTorch computes the source coordinate in float32 with scale = in / out.
  scale = np.float32(in_size) / np.float32(out_size)
  dst = np.arange(out_size, dtype=np.float32)
  src = (dst + np.float32(0.5)) * scale - np.float32(0.5)
  x0 = np.floor(src)
  t = (src - x0).astype(np.float32)
  w = _cubic_weights(t).astype(np.float32)
  m = np.zeros((out_size, in_size), np.float64)
  for tap in range(4):
    idx = np.clip(x0.astype(np.int64) - 1 + tap, 0, in_size - 1)
    np.add.at(m, (np.arange(out_size), idx), w[:, tap])
  return m.astype(np.float32)


def resize_bicubic(x_nchw, out_hw: tuple[int, int], precision=None):
  """Resizes the last two axes of x (..., H, W) to out_hw with PyTorch bicubic semantics."""
  h, w = x_nchw.shape[-2:]
  oh, ow = out_hw
  if (h, w) == (oh, ow):
    return x_nchw
  mh = jnp.asarray(bicubic_matrix(h, oh))
  mw = jnp.asarray(bicubic_matrix(w, ow))
  y = jnp.einsum("oh,...hw->...ow", mh, x_nchw, precision=precision)
  return jnp.einsum("...hw,pw->...hp", y, mw, precision=precision)


@functools.lru_cache(maxsize=64)
def bicubic_matrix_antialias(in_size: int, out_size: int) -> np.ndarray:
  """PyTorch `interpolate(mode="bicubic", antialias=True)` as an (out, in) matrix: when
  downsampling, the cubic kernel (A = -0.5, as PIL) is widened by in/out and renormalised.
  Used for DINOv2 position tables; tests/test_bicubic_reference.py checks it against PyTorch."""
  if in_size == out_size:
    return np.eye(in_size, dtype=np.float32)
  scale = in_size / out_size
  support = 2.0 * max(scale, 1.0)
  inv = 1.0 / max(scale, 1.0)
  a = -0.5

  def cubic(x):
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))

  m = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    center = (i + 0.5) * scale
    lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
    j = np.arange(lo, hi)
    w = cubic((j - center + 0.5) * inv)
    m[i, lo:hi] = w / w.sum()
  return m.astype(np.float32)
