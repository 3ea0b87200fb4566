"""Images: the official frame preprocessing, PyTorch-compatible bicubic resize, and the
normalisations of uint8 frames for the gaze model and for SigLIP.

Bicubic resize equals `F.interpolate(mode="bicubic", align_corners=False)`, implemented as static (out x in) matrices per axis (docs/design.md, "Preprocessing"): A = -0.75, no
antialiasing, taps clamped to the border, no clipping of the output. `jax.image.resize`
antialiases and uses a different kernel, so it is not equivalent.

Host-side frame preprocessing, bit-exact with the official AutoGazeImageProcessor (docs/design.md, "Preprocessing").

PIL bilinear resize of the uint8 frame (shortest edge -> 224), then x/127.5 - 1, then the
ImageNet mean/std. The double normalisation is the official one; do not "fix" it.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from PIL import Image

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


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
RESCALE = 0.00784313725490196  # 1 / 127.5


def shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
  """(h, w) after scaling the short side to `shortest_edge`; the long side truncates."""
  if height <= width:
    return shortest_edge, int(shortest_edge * width / height)
  return int(shortest_edge * height / width), shortest_edge


def resize_frames(frames_thwc: np.ndarray, size=224) -> np.ndarray:
  """PIL BILINEAR resize of uint8 frames (T, H, W, 3); `size` is a shortest edge or (h, w)."""
  frames = np.asarray(frames_thwc)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(
      f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} with shape {frames.shape}"
    )
  h, w = frames.shape[1:3]
  oh, ow = shortest_edge_size(h, w, size) if np.isscalar(size) else tuple(size)
  if (oh, ow) == (h, w):
    return frames.copy()
  return np.stack([np.asarray(Image.fromarray(f).resize((ow, oh), Image.BILINEAR)) for f in frames])


def normalize(frames_thwc: np.ndarray) -> np.ndarray:
  """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in the official double-normalised space."""
  x = (frames_thwc.astype(np.float64) * RESCALE).astype(np.float32) - np.float32(1.0)
  x = (x - IMAGENET_MEAN) / IMAGENET_STD
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def to_display_uint8(x_3hw: np.ndarray) -> np.ndarray:
  """Inverse of `normalize` for pictures: float (..., 3, H, W) -> uint8 (..., H, W, 3)."""
  x = np.moveaxis(np.asarray(x_3hw), -3, -1) * IMAGENET_STD + IMAGENET_MEAN
  return np.clip((x + 1) * 127.5, 0, 255).astype(np.uint8)


def preprocess(frames_thwc: np.ndarray, size=224) -> np.ndarray:
  """The whole official processor: uint8 (T, H, W, 3) -> float32 (T, 3, H', W')."""
  return normalize(resize_frames(frames_thwc, size))


def normalize_on_device(frames_bthwc):
  """uint8 (..., H, W, 3) on device -> float32 (..., 3, H, W), same formula as `normalize`."""
  import jax.numpy as jnp

  x = frames_bthwc.astype(jnp.float32) * jnp.float32(RESCALE) - 1.0
  x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  return jnp.moveaxis(x, -1, -3)


def normalize_siglip(frames_bthwc):
  """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in SigLIP's x / 255, mean 0.5, std 0.5."""
  x = jnp.asarray(frames_bthwc).astype(jnp.float32) / 255.0
  return jnp.moveaxis((x - 0.5) / 0.5, -1, -3)
