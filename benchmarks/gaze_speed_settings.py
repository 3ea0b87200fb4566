"""The special rows of benchmarks/gaze_speed.py: the paper's Table 4 setting, streaming
per-frame latency, and one 4K chunk of `gaze-video`. Each row carries its own reference
measured in the same run (a floor or the whole-clip time), so it reads as a ratio. They use
the default decoding (4 segments, batch-invariant; full cache reads, except the stream row,
which measures both read modes): the table's options (--segments, --reads, --lockstep,
--profile) apply to its main rows only.
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


def stream(gazer, repeats: int, ratio: float = 0.1, frames: int = 16) -> list[dict]:
  """Per-frame latency of `GazeStream.step` (batch 1, preprocessed frames; p50/p99 over at
  least 100 frames after a warm-up clip), with full and with bounded cache reads, against the
  median whole-clip time per frame of the same clip; the three interleaved in the same run.
  Also each frame against its own share of the whole-clip time (`p50_p99_over_same_frame`):
  a growing cache makes late frames dearer than the mean frame by the work alone."""
  from autogaze_jax import vocab

  video = np.random.default_rng(0).normal(size=(1, frames, 3, 224, 224)).astype(np.float32)
  budgets = vocab.budgets_from_ratio(ratio, frames, 265)
  modes = {"full": False, "bounded": True}

  # Frame t attends over t frames of history, so a stream's late frames do more work than the
  # clip's mean frame: each frame's share of the clip's FLOPs (encoder + decoder) by the work
  # model, so a latency can be compared with what the same frame costs inside the whole clip.
  # The model counts visible keys only (what bounded reads touch); the whole clip's segmented
  # full reads spread its time a little more evenly, so for it the shares are an approximation.
  enc = decode_floor.vision_flops(gazer.model, frames, gazer.config.input_img_size) / frames
  cum = [decode_floor.decoder_work(gazer.config, budgets[:t], 1)["flops"] + t * enc for t in range(frames + 1)]
  share = np.diff(cum) / (cum[-1] / frames)  # frame t's work / the mean frame's

  def one_stream(bounded: bool) -> list[float]:
    s = gazer.stream(1, gazing_ratio=ratio, max_frames=frames, bounded_reads=bounded)  # one compiled step per mode
    out = []
    for t in range(frames):
      t0 = time.perf_counter()
      s.step(video[:, t])  # returns host arrays: the frame's gazes are ready
      out.append(time.perf_counter() - t0)
    return out

  whole = lambda: gazer.generate(video, budgets, None)
  for bounded in modes.values():
    one_stream(bounded)
  whole()
  per_frame, clip_times = {m: [] for m in modes}, []
  for _ in range(max(repeats, -(-100 // frames))):  # at least 100 frames, so p99 is not the max
    for m, bounded in modes.items():
      per_frame[m] += one_stream(bounded)
    t0 = time.perf_counter()
    whole()
    clip_times.append(time.perf_counter() - t0)
  ref = float(np.median(clip_times)) / frames
  rows = []
  for m in modes:
    lat = np.asarray(per_frame[m]).reshape(-1, frames)  # (streams, frame index)
    p50, p99 = np.quantile(lat, [0.5, 0.99])
    # each latency against the same frame's share of the whole-clip time
    same_frame = np.quantile(lat / (ref * share), [0.5, 0.99])
    rows.append(dict(setting="stream", reads=m, gazing_ratio=ratio, batch=1, frames=frames,
                     samples=lat.size, p50_ms=round(1000 * p50, 1), p99_ms=round(1000 * p99, 1),
                     whole_clip_ms_per_frame=round(1000 * ref, 1), p99_over_whole_clip=round(p99 / ref, 2),
                     p50_over_whole_clip=round(p50 / ref, 2),
                     first_last_frame_ms=[round(1000 * float(np.median(lat[:, i])), 1) for i in (0, -1)],
                     last_frame_work_over_mean=round(float(share[-1]), 2),
                     p50_p99_over_same_frame=[round(float(v), 2) for v in same_frame]))
  return rows


def video_4k(gazer, probe: dict, ratio: float = 0.1, tiles_per_batch: int = 16) -> dict:
  """One 16-frame 3840x2160 chunk through `gaze_long_video` (tiling, normalising, batching;
  one timed run, several minutes on a 2-core CPU), its generate calls and the whole chunk
  against the floor of the generate calls (the padded last batch included)."""
  from autogaze_jax import vocab
  from autogaze_jax.inference import long_video

  chunk = np.random.default_rng(0).integers(0, 256, (16, 2160, 3840, 3), dtype=np.uint8)
  long_video.gaze_long_video(gazer, [chunk[:, :224, :224]], ratio, tiles_per_batch=tiles_per_batch,
                             progress=False)  # compiles the tile batch
  t0 = time.perf_counter()
  out = long_video.gaze_long_video(gazer, [chunk], ratio, tiles_per_batch=tiles_per_batch, progress=False)
  wall = time.perf_counter() - t0
  tiles = int(out["num_tiles"])
  generated = -(-tiles // tiles_per_batch) * tiles_per_batch  # the last batch is padded
  budgets = vocab.budgets_from_ratio(ratio, 16, 265)
  enc = decode_floor.vision_flops(gazer.model, 16, gazer.config.input_img_size)
  floor = decode_floor.clip_floor(gazer.config, budgets, generated, probe, enc)["floor_s"]
  gen = float(out["gaze_seconds"])
  return dict(setting="4k", gazing_ratio=ratio, tiles=tiles, tiles_generated=generated,
              tiles_per_batch=tiles_per_batch, s_per_chunk=round(wall, 2), generate_s=round(gen, 2),
              ms_per_tile=round(1000 * wall / tiles, 1), floor_s_per_chunk=round(floor, 2),
              generate_over_floor=round(gen / floor, 2), chunk_over_floor=round(wall / floor, 2))


def run(names, gazer, probe: dict, repeats: int) -> list[dict]:
  """The rows of `names` (each one of SETTINGS), printed as they finish."""
  rows = []
  for name in names:
    got = [table4(gazer, probe, repeats)] if name == "table4" else (
      stream(gazer, repeats) if name == "stream" else [video_4k(gazer, probe)])
    for row in got:
      print(" | ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    rows += got
  return rows
