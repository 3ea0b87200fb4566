"""Generated clips named like dataset videos, so labels files can key them: the key
'synthetic/<split>/<seed>.mp4' stands for `sample_video.make_clip(T, size, seed)`."""

from __future__ import annotations

import os

import numpy as np

from autogaze_jax import sample_video


def key(seed: int, split: str = "train") -> str:
  return f"synthetic/{split}/{int(seed)}.mp4"


def seed_of(clip_key: str) -> int:
  stem = os.path.splitext(os.path.basename(clip_key))[0]
  if not clip_key.startswith("synthetic/") or not stem.isdigit():
    raise ValueError(f"synthetic clips: {clip_key!r} is not a key 'synthetic/<split>/<seed>.mp4'")
  return int(stem)


def clip(clip_key: str, frames: int, size: int) -> np.ndarray:
  """uint8 (T, size, size, 3) of a synthetic key."""
  return sample_video.make_clip(frames, size, seed_of(clip_key))


def source(first_seed: int, count: int, frames: int, size: int, split: str = "train"):
  """Yields (key, uint8 clip) for seeds first_seed, first_seed + 1, ..."""
  for s in range(first_seed, first_seed + count):
    yield key(s, split), sample_video.make_clip(frames, size, s)
