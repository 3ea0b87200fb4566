"""Gazing speed of the released architecture (random weights), generate only.

Prints a table and writes JSON: compile time, ms per 16x224x224 clip and clips/s for each
batch size and gazing ratio (no task-loss requirement, so every frame uses its whole
budget: the same work as the official numbers quoted in the README).

  python benchmarks/gaze_speed.py                          # batches 1,4,16; ratios 0.75,0.1
  python benchmarks/gaze_speed.py --batches 1 --ratios 0.1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import numpy as np


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batches", default="1,4,16")
  ap.add_argument("--ratios", default="0.75,0.1")
  ap.add_argument("--frames", type=int, default=16)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--segments", type=int, default=4)
  ap.add_argument("--lockstep", action="store_true")
  ap.add_argument("--json", help="also write the results here")
  args = ap.parse_args(argv)

  from autogaze_jax import AutoGaze, vocab
  from autogaze_jax import mesh as mesh_lib

  gazer = AutoGaze.from_config(seed=0, mesh=mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  rows = []
  for ratio in [float(r) for r in args.ratios.split(",")]:
    for batch in [int(b) for b in args.batches.split(",")]:
      rng = np.random.default_rng(0)
      video = rng.normal(size=(batch, args.frames, 3, 224, 224)).astype(np.float32)
      budgets = vocab.budgets_from_ratio(ratio, args.frames, 265)
      run = lambda video=video, budgets=budgets: gazer.generate(video, budgets, None, lockstep=args.lockstep,
                                                                segments=args.segments)
      t0 = time.perf_counter()
      run()
      first = time.perf_counter() - t0
      times = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
      best = min(times)
      rows.append(dict(gazing_ratio=ratio, batch=batch, compile_s=round(first - best, 2),
                       ms_per_clip=round(1000 * best / batch, 1), clips_per_s=round(batch / best, 2)))
      r = rows[-1]
      print(f"ratio {ratio:<5} batch {batch:>3}: compile {r['compile_s']:6.2f} s | "
            f"{r['ms_per_clip']:8.1f} ms/clip | {r['clips_per_s']:7.2f} clips/s", flush=True)
  meta = dict(device=str(jax.devices()[0].device_kind), backend=jax.default_backend(),
              cpu=platform.processor() or platform.machine(), jax=jax.__version__,
              frames=args.frames, k=10, generate_only=True)
  print(json.dumps({"meta": meta, "results": rows}, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"meta": meta, "results": rows}, f, indent=1)


if __name__ == "__main__":
  main()
