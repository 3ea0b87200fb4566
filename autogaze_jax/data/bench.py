"""`autogaze-jax data bench SRC`: clips/s and frames/s of the Grain pipeline for several
worker counts. SRC is a video file (read over and over), a folder of videos (with or without
train/), `synthetic` or `samples`."""

from __future__ import annotations

import os
import time

from autogaze_jax.data import pipeline, sources


def _source(src: str, cfg):
  if src in ("synthetic", "samples"):
    cfg.source = src
    return pipeline.make_source(cfg, "train")
  if os.path.isfile(src):
    return sources.FolderSource([src] * 64, cfg.clip_len, cfg.frame_sample_rate, "first", cfg.min_frames)
  split = "train" if os.path.isdir(os.path.join(src, "train")) else None
  return sources.FolderSource(sources.list_videos(src, split), cfg.clip_len, cfg.frame_sample_rate,
                              "first", cfg.min_frames)


def bench(src: str, workers=(0, 1, 2), batches: int = 40, batch_size: int = 8, image_size: int = 224,
          clip_len: int = 16, threads: int = 1) -> list[dict]:
  """Steady-state rates: the first batches (worker start-up, filling the buffers) are not timed."""
  cfg = pipeline.data_config()
  cfg.image_size, cfg.clip_len, cfg.read_threads, cfg.prefetch_buffer = image_size, clip_len, threads, 2
  source = _source(src, cfg)
  rows = []
  for n in workers:
    cfg.num_workers = n
    it = iter(pipeline.make_dataset(cfg, source, batch_size=batch_size, seed=0, process_index=0, process_count=1))
    for _ in range(3):  # worker start-up and first decodes are not throughput
      next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
      batch = next(it)
    dt = time.perf_counter() - t0
    del it
    clips = batches * batch_size
    rows.append({"workers": n, "threads": threads, "clips_per_s": clips / dt, "frames_per_s": clips * clip_len / dt,
                 "batch_shape": list(batch["video"].shape)})
  return rows


def format_table(rows: list[dict]) -> str:
  lines = ["| workers | threads each | clips/s | frames/s |", "|---|---|---|---|"]
  lines += [f"| {r['workers']} | {r['threads']} | {r['clips_per_s']:.1f} | {r['frames_per_s']:.0f} |" for r in rows]
  return "\n".join(lines)
