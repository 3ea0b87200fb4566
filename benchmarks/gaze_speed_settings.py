"""The special rows of benchmarks/gaze_speed.py: the paper's Table 4 setting, streaming
per-frame latency, and one 4K chunk of `gaze-video`. Each row carries its own reference
measured in the same run (a floor or the whole-clip time), so it reads as a ratio.
"""

from __future__ import annotations

import time

import decode_floor  # benchmarks/decode_floor.py, beside this script
import numpy as np

SETTINGS = ("table4", "stream", "4k")


def _best_of(fn, repeats: int) -> tuple[float, float]:
  """(first call incl. compile, best of `repeats` later calls) in seconds."""
  t0 = time.perf_counter()
  fn()
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return first, min(times)


def table4(gazer, probe: dict, repeats: int) -> dict:
  """The paper's Table 4: 10 frames, K = 10, ratio 0.1 (26 gazes per frame), batch 1."""
  from autogaze_jax import vocab

  frames, ratio = 10, 0.1
  video = np.random.default_rng(0).normal(size=(1, frames, 3, 224, 224)).astype(np.float32)
  budgets = vocab.budgets_from_ratio(ratio, frames, 265)
  first, best = _best_of(lambda: gazer.generate(video, budgets, None), repeats)
  enc = decode_floor.vision_flops(gazer.model, frames, gazer.config.input_img_size)
  floor = decode_floor.clip_floor(gazer.config, budgets, 1, probe, enc)
  return dict(setting="table4", frames=frames, gazes_per_frame=int(budgets[0]), batch=1,
              compile_s=round(first - best, 2), ms_per_clip=round(1000 * best, 1),
              floor_ms_per_clip=round(1000 * floor["floor_s"], 1), over_floor=round(best / floor["floor_s"], 2),
              paper_gpu_ms=193.0)


def stream(gazer, repeats: int, ratio: float = 0.1, frames: int = 16) -> dict:
  """Per-frame latency of `GazeStream.step` (batch 1; p50/p99 over `repeats` clips after a
  warm-up clip) against the whole-clip time per frame, interleaved in the same run."""
  from autogaze_jax import vocab

  rng = np.random.default_rng(0)
  clip = rng.integers(0, 255, (1, frames, 224, 224, 3), dtype=np.uint8)
  normalised = np.random.default_rng(1).normal(size=(1, frames, 3, 224, 224)).astype(np.float32)
  budgets = vocab.budgets_from_ratio(ratio, frames, 265)

  def one_stream() -> list[float]:
    s = gazer.stream(1, gazing_ratio=ratio, max_frames=frames)
    out = []
    for t in range(frames):
      t0 = time.perf_counter()
      s.step(clip[:, t])  # returns host arrays: the frame's gazes are ready
      out.append(time.perf_counter() - t0)
    return out

  whole = lambda: gazer.generate(normalised, budgets, None)
  one_stream()
  whole()
  per_frame, clip_times = [], []
  for _ in range(repeats):
    per_frame += one_stream()
    t0 = time.perf_counter()
    whole()
    clip_times.append(time.perf_counter() - t0)
  ref = min(clip_times) / frames
  p50, p99 = np.quantile(per_frame, [0.5, 0.99])
  return dict(setting="stream", gazing_ratio=ratio, batch=1, frames=frames, samples=len(per_frame),
              p50_ms=round(1000 * p50, 1), p99_ms=round(1000 * p99, 1),
              whole_clip_ms_per_frame=round(1000 * ref, 1), p99_over_whole_clip=round(p99 / ref, 2),
              p50_over_whole_clip=round(p50 / ref, 2))


def video_4k(gazer, probe: dict, ratio: float = 0.1, tiles_per_batch: int = 16) -> dict:
  """One 16-frame 3840x2160 chunk through `gaze_long_video` (tiling, normalising, batching),
  against the floor of its tiles' generate calls."""
  from autogaze_jax import vocab
  from autogaze_jax.inference import long_video

  chunk = np.random.default_rng(0).integers(0, 255, (16, 2160, 3840, 3), dtype=np.uint8)
  long_video.gaze_long_video(gazer, [chunk[:, :224, :224]], ratio, tiles_per_batch=tiles_per_batch,
                             progress=False)  # compiles the tile batch
  t0 = time.perf_counter()
  out = long_video.gaze_long_video(gazer, [chunk], ratio, tiles_per_batch=tiles_per_batch, progress=False)
  wall = time.perf_counter() - t0
  tiles = int(out["num_tiles"])
  budgets = vocab.budgets_from_ratio(ratio, 16, 265)
  enc = decode_floor.vision_flops(gazer.model, 16, gazer.config.input_img_size)
  floor = decode_floor.clip_floor(gazer.config, budgets, tiles, probe, enc)["floor_s"]
  return dict(setting="4k", gazing_ratio=ratio, tiles=tiles, tiles_per_batch=tiles_per_batch,
              s_per_chunk=round(wall, 2), ms_per_tile=round(1000 * wall / tiles, 1),
              floor_s_per_chunk=round(floor, 2), over_floor=round(wall / floor, 2))


def run(names, gazer, probe: dict, repeats: int) -> list[dict]:
  """The rows of `names` (each one of SETTINGS), printed as they finish."""
  rows = []
  for name in names:
    row = table4(gazer, probe, repeats) if name == "table4" else (
      stream(gazer, repeats) if name == "stream" else video_4k(gazer, probe))
    print(" | ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    rows.append(row)
  return rows
