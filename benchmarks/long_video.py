"""Gazing a long high-resolution video with bounded memory: tiles/s and peak memory on a
measured stretch, extrapolated to the full size (default 3840x2160, 1,024 frames).

  python benchmarks/long_video.py --measure-frames 16 --ratio 0.1
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import jax
import numpy as np


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--width", type=int, default=3840)
  ap.add_argument("--height", type=int, default=2160)
  ap.add_argument("--frames", type=int, default=1024, help="full length to extrapolate to")
  ap.add_argument("--measure-frames", type=int, default=16, help="frames actually gazed")
  ap.add_argument("--ratio", type=float, default=0.1)
  ap.add_argument("--tiles-per-batch", type=int, default=16)
  args = ap.parse_args(argv)

  from autogaze_jax import AutoGaze
  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.inference import long_video

  gazer = AutoGaze.from_config(seed=0, mesh=mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  rng = np.random.default_rng(0)

  def chunks():  # random frames: without a task-loss requirement the work does not depend on content
    for start in range(0, args.measure_frames, 16):
      n = min(16, args.measure_frames - start)
      yield rng.integers(0, 255, (n, args.height, args.width, 3), dtype=np.uint8)

  # Compile once on a single tile batch, then measure.
  long_video.gaze_long_video(gazer, [np.zeros((16, 224, 224, 3), np.uint8)], args.ratio,
                             tiles_per_batch=args.tiles_per_batch, progress=False)
  t0 = time.perf_counter()
  out = long_video.gaze_long_video(gazer, chunks(), args.ratio, tiles_per_batch=args.tiles_per_batch)
  wall = time.perf_counter() - t0
  tiles_per_chunk = math.ceil(args.height / 224) * math.ceil(args.width / 224)
  total_tiles = tiles_per_chunk * math.ceil(args.frames / 16)
  rate = out["num_tiles"] / wall
  result = dict(
    device=str(jax.devices()[0].device_kind), width=args.width, height=args.height,
    gazing_ratio=args.ratio, tiles_per_batch=args.tiles_per_batch,
    measured_frames=args.measure_frames, measured_tiles=out["num_tiles"], measured_s=round(wall, 1),
    tiles_per_s=round(rate, 3), peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    full_frames=args.frames, full_tiles=total_tiles, extrapolated_full_s=round(total_tiles / rate, 0),
  )
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
