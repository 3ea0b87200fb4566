"""Gazing speed of the released architecture (random weights), generate only.

Prints a table and writes JSON: compile time, ms per 16x224x224 clip and clips/s for each
batch size and gazing ratio (no task-loss requirement, so every frame uses its whole
budget: the same work as the official numbers quoted in the README), for each cache-read
mode: "full" (every slot of the segment's cache, masked; the default) and "bounded"
(attention reads the KV cache only up to its filled extent, in blocks). The modes' repeats are
interleaved, so their ratio is measured under the same machine load. Next to each time: the
floor for the same work on this machine (benchmarks/decode_floor.py: a read-bandwidth and a
matmul probe measured in this run, times the bytes and FLOPs generation must touch) and
measured / floor.

  python benchmarks/gaze_speed.py                          # batches 1,4,16; ratios 0.75,0.1
  python benchmarks/gaze_speed.py --batches 1 --ratios 0.1 --reads full --json out.json
  python benchmarks/gaze_speed.py --batches 1 --ratios 0.75 --profile runs/gaze_trace   # + XProf traces
  python benchmarks/gaze_speed.py --batches 1 --ratios 0.1 --settings stream  # main rows + one special row

Then the special rows (benchmarks/gaze_speed_settings.py, `--settings`, default all; "" for none):
the paper's Table 4 setting (10 frames, 26 gazes per frame) against its floor, streaming
per-frame latency p50/p99 against the whole-clip time per frame, one 4K `gaze-video` chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import decode_floor  # benchmarks/decode_floor.py, beside this script
import gaze_speed_settings  # benchmarks/gaze_speed_settings.py
import jax
import numpy as np

READS = {"bounded": True, "full": False}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batches", default="1,4,16")
  ap.add_argument("--ratios", default="0.75,0.1")
  ap.add_argument("--frames", type=int, default=16)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--segments", type=int, default=4)
  ap.add_argument("--reads", default="full,bounded", help="cache-read modes: full, bounded")
  ap.add_argument("--lockstep", action="store_true")
  ap.add_argument("--json", help="also write the results here")
  ap.add_argument("--profile", default="", help="DIR: one more call of each row and mode under an XProf "
                  "trace (jax.profiler), written to DIR/ratio<r>_batch<b>_<mode>")
  ap.add_argument("--settings", default=",".join(gaze_speed_settings.SETTINGS),
                  help="special rows: table4, stream, 4k (comma-separated; empty for none)")
  args = ap.parse_args(argv)
  if args.repeats < 1:
    ap.error(f"--repeats: need >= 1, got {args.repeats}")
  settings = [n.strip() for n in args.settings.split(",") if n.strip()]
  bad = [n for n in settings if n not in gaze_speed_settings.SETTINGS]
  if bad:
    ap.error(f"--settings: unknown {', '.join(bad)}; choose from {', '.join(gaze_speed_settings.SETTINGS)}")
  modes = [m.strip() for m in args.reads.split(",")]
  unknown = [m for m in modes if m not in READS]
  if unknown:
    ap.error(f"--reads: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(READS)}")

  from autogaze_jax import AutoGaze, vocab
  from autogaze_jax import mesh as mesh_lib

  gazer = AutoGaze.from_config(seed=0, mesh=mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  probe = decode_floor.probes()
  encoder_flops = decode_floor.vision_flops(gazer.model, args.frames, gazer.config.input_img_size)
  print(f"probes: read {probe['read_gb_s']:.1f} GB/s, matmul {probe['matmul_gflop_s']:.0f} GFLOP/s", flush=True)
  rows = []
  for ratio in [float(r) for r in args.ratios.split(",") if r.strip()]:
    for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
      rng = np.random.default_rng(0)
      video = rng.normal(size=(batch, args.frames, 3, 224, 224)).astype(np.float32)
      budgets = vocab.budgets_from_ratio(ratio, args.frames, 265)
      runs = {m: (lambda m=m, video=video, budgets=budgets: gazer.generate(
        video, budgets, None, lockstep=args.lockstep, segments=args.segments, bounded_reads=READS[m]))
        for m in modes}
      first, times, ids = {}, {m: [] for m in modes}, {}
      for m, run in runs.items():
        t0 = time.perf_counter()
        ids[m] = run()[0]
        first[m] = time.perf_counter() - t0
      for _ in range(args.repeats):
        for m, run in runs.items():
          t0 = time.perf_counter()
          run()
          times[m].append(time.perf_counter() - t0)
      if args.profile:
        for m, run in runs.items():
          with jax.profiler.trace(os.path.join(args.profile, f"ratio{ratio}_batch{batch}_{m}")):
            run()
      base = min(times[modes[0]])
      floor = decode_floor.clip_floor(gazer.config, budgets, batch, probe, encoder_flops)
      for m in modes:
        best = min(times[m])
        rows.append(dict(gazing_ratio=ratio, batch=batch, reads=m, compile_s=round(first[m] - best, 2),
                         ms_per_clip=round(1000 * best / batch, 1), clips_per_s=round(batch / best, 2),
                         time_over_first_mode=round(best / base, 3),
                         same_gazes_as_first_mode=bool(np.array_equal(ids[m], ids[modes[0]])),
                         floor_ms_per_clip=round(1000 * floor["floor_s"] / batch, 1),
                         over_floor=round(best / floor["floor_s"], 2),
                         bound="read" if floor["read_s"] >= floor["compute_s"] else "compute",
                         gflop_per_clip=round(floor["gflop"] / batch, 2),
                         gbytes_per_clip=round(floor["gbytes"] / batch, 3)))
        r = rows[-1]
        print(f"ratio {ratio:<5} batch {batch:>3} {m:>7}: compile {r['compile_s']:6.2f} s | "
              f"{r['ms_per_clip']:8.1f} ms/clip | {r['clips_per_s']:7.2f} clips/s | "
              f"x{r['time_over_first_mode']:.3f} of {modes[0]} | same gazes {r['same_gazes_as_first_mode']} | "
              f"floor {r['floor_ms_per_clip']:.1f} ms ({r['bound']}) | x{r['over_floor']:.2f} of floor",
              flush=True)
  special = gaze_speed_settings.run(settings, gazer, probe, args.repeats)
  meta = dict(device=str(jax.devices()[0].device_kind), backend=jax.default_backend(),
              cpu=platform.processor() or platform.machine(), jax=jax.__version__,
              frames=args.frames, k=10, generate_only=True, probes=probe)
  result = {"meta": meta, "results": rows, "settings": special}
  print(json.dumps(result, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
