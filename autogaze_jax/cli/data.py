"""`autogaze-jax data build | check | bench`.

`autogaze-jax data check DIR`: which videos under DIR give a training clip, and why the
others do not. Usable files that needed fixing on the way (grayscale, odd sizes, rotation
metadata, short or truncated files that get edge-padded) are listed with a note.

`autogaze-jax data bench SRC`: clips/s and frames/s of the Grain pipeline for several
worker counts. SRC is a video file (read over and over), a folder of videos (with or without
train/), `synthetic` or `samples`.
"""

from __future__ import annotations

import json
import os
import time

from tqdm import tqdm

from autogaze_jax import video as video_lib
from autogaze_jax.data import data_config, pipeline, sources


def cmd_build(args) -> None:
  from autogaze_jax.data import tfds_build

  report = tfds_build.build(args.src, args.out, args.clip_len, args.size, args.frame_sample_rate,
                            args.min_frames)
  print(json.dumps(report, indent=2))
  print(f"wrote TFDS dataset '{tfds_build.NAME}' to {args.out} (read it with --config.data.source=tfds "
        f"--config.data.root={args.out}); skipped files: {args.out}/skipped.jsonl")


def cmd_check(args) -> None:
  result = check(args.dir, args.clip_len, args.min_frames)
  print(format_report(result, args.dir))
  if not result["usable"]:
    raise ValueError(f"data check: no usable video under {args.dir}")


def cmd_bench(args) -> None:
  workers = [int(w) for w in args.workers.split(",")]
  rows = bench(args.src, workers, args.batches, args.batch_size, args.size, args.clip_len, args.threads)
  print(format_table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


def add_parser(sub) -> None:
  data = sub.add_parser("data", help="build, check and benchmark video datasets")
  dsub = data.add_subparsers(dest="data_command", required=True)

  def common(p):
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--min-frames", type=int, default=1, help="fewer decodable frames = unusable")

  b = dsub.add_parser("build", help="folder of videos (train/, val/) -> TFDS ArrayRecord clips; resumable")
  b.add_argument("src")
  b.add_argument("out")
  b.add_argument("--size", type=int, default=224)
  b.add_argument("--frame-sample-rate", type=int, default=1)
  common(b)
  b.set_defaults(func=cmd_build)

  c = dsub.add_parser("check", help="list usable and unusable videos with reasons")
  c.add_argument("dir")
  common(c)
  c.set_defaults(func=cmd_check)

  n = dsub.add_parser("bench", help="pipeline clips/s for several worker counts")
  n.add_argument("src", help="a video file, a folder, 'synthetic' or 'samples'")
  n.add_argument("--workers", default="0,1,2")
  n.add_argument("--batches", type=int, default=40)
  n.add_argument("--threads", type=int, default=1, help="decode threads per worker (or in-process)")
  n.add_argument("--batch-size", type=int, default=8)
  n.add_argument("--size", type=int, default=224)
  n.add_argument("--json", help="also write the rows to this file")
  common(n)
  n.set_defaults(func=cmd_bench)


def _notes(info: dict, clip, clip_len: int) -> list[str]:
  notes = []
  if info["pix_fmt"] and info["pix_fmt"].startswith(("gray", "ya")):
    notes.append(f"grayscale ({info['pix_fmt']}), converted to RGB")
  if info["width"] % 2 or info["height"] % 2:
    notes.append(f"odd size {info['width']}x{info['height']}")
  if clip.shape[1:3] != (info["height"], info["width"]):
    notes.append(f"rotation metadata: stored {info['width']}x{info['height']}, used upright "
                 f"{clip.shape[2]}x{clip.shape[1]}")
  if 0 < info["frames"] < clip_len:
    notes.append(f"only {info['frames']} frames, last one repeated")
  return notes


def check(root: str, clip_len: int = 16, min_frames: int = 1, progress: bool = True) -> dict:
  """{"usable": [(path, notes)], "unusable": [(path, reason)]} for every video file under root
  (recursively; files with other extensions are ignored)."""
  if not os.path.isdir(root):
    raise ValueError(f"data check: {root} is not a directory")
  usable, unusable = [], []
  for path in tqdm(video_lib.list_videos(root), desc="check", disable=not progress, dynamic_ncols=True):
    try:
      info = video_lib.probe(path)
      clip = video_lib.read_clip(path, clip_len, 1, None, min_frames)
      usable.append((path, _notes(info, clip, clip_len)))
    except video_lib.VideoError as e:
      unusable.append((path, e.reason))
  return {"usable": usable, "unusable": unusable}


def format_report(result: dict, root: str) -> str:
  lines = []
  for path, notes in result["usable"]:
    lines.append(f"ok    {os.path.relpath(path, root)}" + (f"  ({'; '.join(notes)})" if notes else ""))
  for path, reason in result["unusable"]:
    lines.append(f"BAD   {os.path.relpath(path, root)}: {reason}")
  lines.append(f"{len(result['usable'])} usable, {len(result['unusable'])} unusable")
  return "\n".join(lines)


def _source(src: str, cfg):
  if src in ("synthetic", "samples"):
    cfg.source = src
    return pipeline.make_source(cfg, "train")
  if os.path.isfile(src):
    return sources.FolderSource([src] * 64, cfg.clip_len, cfg.frame_sample_rate, "first", cfg.min_frames)
  split = "train" if os.path.isdir(os.path.join(src, "train")) else None
  return sources.FolderSource(video_lib.list_videos(src, split), cfg.clip_len, cfg.frame_sample_rate,
                              "first", cfg.min_frames)


def bench(src: str, workers=(0, 1, 2), batches: int = 40, batch_size: int = 8, image_size: int = 224,
          clip_len: int = 16, threads: int = 1) -> list[dict]:
  """Steady-state rates: the first batches (worker start-up, filling the buffers) are not timed."""
  cfg = data_config.data_config()
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
