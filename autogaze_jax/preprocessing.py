"""Host-side frame preprocessing, bit-exact with the official AutoGazeImageProcessor (§3.1).

PIL bilinear resize of the uint8 frame (shortest edge -> 224), then x/127.5 - 1, then the
ImageNet mean/std. The double normalisation is the official one; do not "fix" it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

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
