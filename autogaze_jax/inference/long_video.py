"""Gazing videos of any resolution and length with bounded memory.

The video is read 16 frames at a time; each chunk is cut into 224 x 224 tiles (padding
recorded), tiles go through the jitted decoder in fixed-size batches (one compile), and the
per-tile gaze masks are put back into the video's own patch grid of every scale. Only one
chunk of frames and one batch of tiles are in memory at a time, so length and resolution
cost time, not memory. Tiles are independent (batch-invariant decoding), as in the paper's
16 x 224 x 224 tiling.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from autogaze_jax import image as image_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.inference import tiling


def gaze_long_video(gazer, chunks: Iterable[np.ndarray], gazing_ratio, task_loss_requirement=None,
                    tiles_per_batch: int = 16, progress: bool = True) -> dict:
  """Gazes every 16 x 224 x 224 tile of a video given as uint8 frame chunks.

  Returns per-scale masks over the whole video, {scale: (T, rows, cols) uint8} in the video's
  own coordinates (cells of a scale cover 224 / grid pixels), gazes per frame, and timings.
  """
  cfg = gazer.config
  size, tt = cfg.input_img_size, 16
  vocab = cfg.num_vision_tokens_each_frame
  if tiles_per_batch < 1:
    raise ValueError(f"tiles_per_batch: must be >= 1, got {tiles_per_batch}")
  budgets = vocab_lib.budgets_from_ratio(gazing_ratio, tt, vocab)
  eps = vocab_lib.check_task_loss_requirement(task_loss_requirement, tiles_per_batch, tt)
  masks: dict[int, list] = {s: [] for s in cfg.scales}
  per_frame, n_tiles, gaze_s = [], 0, 0.0
  t0 = time.perf_counter()
  bar = tqdm(desc="gazing tiles", unit="tile", disable=not progress)
  for frames in chunks:
    t_real = frames.shape[0]
    tiles, grid = tiling.tile_video(frames, (tt, size, size))  # uint8 (N, 16, 224, 224, 3)
    ids_all = []
    for start in range(0, len(tiles), tiles_per_batch):
      # Normalise one batch at a time: float tiles of a whole 4K chunk would take 1.7 GB.
      part = np.stack([image_lib.normalize(t) for t in tiles[start : start + tiles_per_batch]])
      n = len(part)
      if n < tiles_per_batch:  # keep one compiled shape; padded tiles are dropped below
        part = np.concatenate([part, np.repeat(part[-1:], tiles_per_batch - n, 0)])
      g0 = time.perf_counter()
      ids, lens = gazer.generate(part, budgets, eps)
      gaze_s += time.perf_counter() - g0
      ids = np.where(np.arange(ids.shape[-1]) < lens[..., None], ids, vocab)[:n]
      ids_all.append(ids)
      bar.update(n)
    ids = np.concatenate(ids_all)
    n_tiles += len(ids)
    for s, m in zip(cfg.scales, vocab_lib.gazing_masks(ids, cfg.scales, vocab)):
      masks[s].append(tiling.masks_to_video(m, grid)[:t_real].astype(np.uint8))
    per_frame.append(sum(masks[s][-1].reshape(t_real, -1).sum(1) for s in cfg.scales))
  bar.close()
  if not per_frame:
    raise ValueError("gaze_long_video: the video has no frames")
  return {
    "masks": {s: np.concatenate(v) for s, v in masks.items()},
    "gazes_per_frame": np.concatenate(per_frame),
    "num_tiles": n_tiles,
    "gaze_seconds": gaze_s,
    "total_seconds": time.perf_counter() - t0,
  }
