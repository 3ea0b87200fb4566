"""`autogaze-jax data build SRC_DIR OUT_DIR`: a folder of videos -> a TFDS dataset of decoded
uint8 clips in ArrayRecord shards, read back with `tfds.data_source` (no TensorFlow).

Two phases, so an interrupted build loses little: (1) each video is decoded, cut and resized
once into OUT_DIR/staging/SPLIT/<hash>.npy (files already there are skipped on a rerun; bad
videos leave a .skip file with the reason); (2) the staged clips are written as the TFDS
dataset `autogaze_clips`, after which the staging folder is removed (skipped files and reasons stay in
OUT_DIR/skipped.jsonl).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from autogaze_jax import video as video_lib
from autogaze_jax.data import sources, transforms

NAME, VERSION = sources.TFDS_NAME, sources.TFDS_VERSION


def _stage_split(src_dir: str, staging: str, split: str, clip_len: int, size: int,
                 sample_rate: int, min_frames: int, progress: bool) -> dict:
  paths = video_lib.list_videos(src_dir, split)
  os.makedirs(staging, exist_ok=True)
  prefix = os.path.basename(os.path.normpath(src_dir))
  done = skipped = 0
  for path in tqdm(paths, desc=f"decode {split}", disable=not progress, dynamic_ncols=True):
    rel = os.path.join(prefix, split, os.path.relpath(path, os.path.join(src_dir, split)))
    stem = os.path.join(staging, hashlib.sha1(rel.encode()).hexdigest()[:20])
    if os.path.exists(stem + ".npy") or os.path.exists(stem + ".skip"):
      done += os.path.exists(stem + ".npy")
      skipped += os.path.exists(stem + ".skip")
      continue
    try:
      clip = transforms.to_square(video_lib.read_clip(path, clip_len, sample_rate, None, min_frames), size)
    except video_lib.VideoError as e:
      with open(stem + ".skip", "w") as f:
        json.dump({"path": rel, "reason": e.reason}, f)
      skipped += 1
      continue
    with open(stem + ".tmp", "wb") as f:  # write then rename: a killed build leaves no half file
      np.save(f, clip)
    with open(stem + ".json", "w") as f:
      json.dump({"path": rel}, f)
    os.replace(stem + ".tmp", stem + ".npy")
    done += 1
  return {"videos": len(paths), "clips": done, "skipped": skipped}


def _staged(staging: str):
  for name in sorted(os.listdir(staging)):
    if name.endswith(".npy"):
      stem = os.path.join(staging, name[:-4])
      with open(stem + ".json") as f:
        rel = json.load(f)["path"]
      yield rel, np.load(stem + ".npy")


class AutogazeClips(tfds.core.GeneratorBasedBuilder):
  """uint8 clips (T, H, W, 3) with their source path; generated from a staging folder."""

  VERSION = tfds.core.Version(VERSION)
  _checksums_path = None  # nothing is downloaded (and the lookup would need importlib_resources)

  def __init__(self, *, staging_root: str | None = None, **kwargs):
    self._staging_root = staging_root
    super().__init__(**kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description="decoded video clips for AutoGaze",
                                 features=tfds.features.FeaturesDict({
      "video": tfds.features.Tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding="bytes"),
      "path": tfds.features.Text(),
    }))

  def _split_generators(self, dl_manager):
    if self._staging_root is None:
      raise ValueError("data build: nothing staged to write")
    splits = sorted(os.listdir(self._staging_root))
    return {s: self._generate_examples(os.path.join(self._staging_root, s)) for s in splits}

  def _generate_examples(self, staging):
    for rel, clip in _staged(staging):
      yield rel, {"video": clip, "path": rel}


def build(src_dir: str, out_dir: str, clip_len: int = 16, size: int = 224, sample_rate: int = 1,
          min_frames: int = 1, progress: bool = True) -> dict:
  """Returns per-split counts. Raises ValueError when SRC_DIR has neither train/ nor val/ or
  when no video in it is usable."""
  splits = [s for s in ("train", "val", "test") if os.path.isdir(os.path.join(src_dir, s))]
  if not splits:
    raise ValueError(f"data build: {src_dir} has neither a train/ nor a val/ folder")
  if os.path.isdir(os.path.join(out_dir, NAME, VERSION)):
    raise FileExistsError(f"data build: {out_dir}/{NAME}/{VERSION} already exists; choose another OUT_DIR")
  staging_root = os.path.join(out_dir, "staging")
  report = {s: _stage_split(src_dir, os.path.join(staging_root, s), s, clip_len, size, sample_rate,
                            min_frames, progress) for s in splits}
  empty = [s for s in splits if report[s]["clips"] == 0]
  if empty:
    raise ValueError(f"data build: no usable video in split(s) {', '.join(empty)} of {src_dir} "
                     f"(reasons in {staging_root}/<split>/*.skip)")
  AutogazeClips(data_dir=out_dir, file_format="array_record", staging_root=staging_root).download_and_prepare()
  with open(os.path.join(out_dir, "skipped.jsonl"), "w") as out:  # the reasons outlive the staging
    for s in splits:
      for name in sorted(os.listdir(os.path.join(staging_root, s))):
        if name.endswith(".skip"):
          with open(os.path.join(staging_root, s, name)) as f:
            out.write(f.read().strip() + "\n")
  shutil.rmtree(staging_root)
  return report
