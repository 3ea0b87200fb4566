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
