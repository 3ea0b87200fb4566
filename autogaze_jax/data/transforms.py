"""Spatial transforms of uint8 clips to square training frames (docs/design.md, "Data").

`center`: PIL bilinear shortest edge -> size, then a center crop (the task transform; for
square sources it equals the gaze transform exactly). `random_resized`: a random crop of
scale [0.08, 1] and aspect [3/4, 4/3] of the source, resized to size x size (the official
augmentation, which no official config enables). Clips stay uint8; normalisation is done
on device.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from autogaze_jax import image as image_lib

MODES = ("center", "random_resized")


def center_crop(frames_thwc: np.ndarray, size: int) -> np.ndarray:
  h, w = frames_thwc.shape[1:3]
  top, left = (h - size) // 2, (w - size) // 2
  return frames_thwc[:, top : top + size, left : left + size]


def random_resized_box(rng, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """(top, left, h, w) of a crop with a random area fraction and log-uniform aspect ratio;
  falls back to the largest centred crop within `ratio` after 10 tries."""
  area = height * width
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  if width / height < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif width / height > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def to_square(frames_thwc: np.ndarray, size: int, mode: str = "center", rng=None) -> np.ndarray:
  """uint8 (T, H, W, 3) -> uint8 (T, size, size, 3)."""
  if mode == "center":
    return center_crop(image_lib.resize_frames(frames_thwc, size), size)
  if mode == "random_resized":
    if rng is None:
      raise ValueError("transforms: mode 'random_resized' needs an rng")
    top, left, h, w = random_resized_box(rng, *frames_thwc.shape[1:3])
    crop = frames_thwc[:, top : top + h, left : left + w]
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in crop])
  raise ValueError(f"transforms: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
