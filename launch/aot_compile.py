"""Check a pod config before paying for the pod: compile its step for a TPU topology on this
machine (CPU only; needs `pip install libtpu==0.0.50.*`) and print, per step, HBM per chip
(arguments, temporaries, outputs), whether it fits, XLA's FLOP and byte counts, a roofline
time and the implied clips/s for the whole slice (see autogaze_jax/cli/aot.py for the caveats).

  python launch/aot_compile.py --config configs/ntp.py:official --topology v5e:16x16
  python launch/aot_compile.py --config configs/grpo.py:official --topology v5p:4x4x4
  python launch/aot_compile.py --config configs/recon.py:large --topology v5e:16x16 --fsdp 1,2,4,8,16
  python launch/aot_compile.py --config configs/gaze.py:released --topology v6e:16x16 --gaze-batch-per-chip 8
  python launch/aot_compile.py --config configs/ntp.py:official --topology v5e:16x16 --num-slices 4  # multi-slice
  # overrides as for training: --config.batch_size=256 "--config.mesh.shape=(-1,4)"

A config with a `stage` (ntp, grpo, recon) compiles that training step; a gaze-model config
(configs/gaze.py) compiles whole-clip gazing. `--fsdp 1,2,4` compiles once per mesh
(chips / f, f) over (data, fsdp) instead of the config's mesh.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the topology compiler needs no local TPU
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import (
  aot,
  config_files,
)

HEADER = ("step", "mesh (data,fsdp)", "args GiB", "temp GiB", "out GiB", "total/chip GiB", "fits",
          "XLA GFLOP/chip", "loop x", "GFLOP/chip", "GB/chip", "roofline ms", "clips/s (slice)", "compile s")


def build(cfg, mesh, gaze_batch_per_chip: int):
  if "stage" in cfg:
    return aot.train_step(cfg, mesh)
  if "decoder" in cfg:  # a gaze-model config
    return aot.gaze_step(cfg, mesh, gaze_batch_per_chip * mesh.size)
  raise ValueError("--config: neither a training config (with `stage`) nor a gaze-model config")


def row(r: dict) -> tuple:
  mesh = ",".join(str(v) for v in r["mesh"].values())
  return (r["step"], f"({mesh})", f"{r['hbm_args_gib']:.2f}", f"{r['hbm_temp_gib']:.2f}", f"{r['hbm_out_gib']:.2f}",
          f"{r['hbm_total_gib']:.2f} / {r['hbm_chip_gib']:.0f}", "yes" if r["fits"] else "NO",
          f"{r['xla_flops'] / 1e9:.1f}", f"{r['loop_factor']:.1f}", f"{r['flops_per_chip'] / 1e9:.1f}", f"{r['bytes_per_chip_est'] / 1e9:.2f}",
          f"{r['t_step_s'] * 1e3:.1f} ({r['bound'][:3]})", f"{r['clips_per_s']:.1f}", f"{r['compile_s']:.0f}")


def markdown(rows) -> str:
  lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="configs/<stage>.py[:variant] or configs/gaze.py[:variant]")
  p.add_argument("--topology", required=True, help="CHIP:SHAPE, e.g. v5e:16x16, v5p:4x4x4, v6e:8x8")
  p.add_argument("--num-slices", type=int, default=1,
                 help="slices of that topology joined over DCN (hybrid mesh: slices along the data axis)")
  p.add_argument("--fsdp", help="comma-separated fsdp sizes: one compile per mesh (chips / f, f)")
  p.add_argument("--gaze-batch-per-chip", type=int, default=4, help="clips per chip for gazing")
  p.add_argument("--json", help="also write the rows to this file")
  args, overrides = p.parse_known_args(argv)
  try:
    cfg = config_files.apply_overrides(config_files.load(args.config), overrides)
    devices = aot.topology_devices(args.topology, args.num_slices)
    chip = aot.CHIPS[args.topology.partition(":")[0]]
    default = tuple(cfg.mesh.shape) if "mesh" in cfg else (-1, 1)
    shapes = [(-1, int(f)) for f in args.fsdp.split(",")] if args.fsdp else [default]
    results = []
    for shape in shapes:
      mesh = mesh_lib.make_mesh(shape, devices=devices)
      results.append(aot.analyse(build(cfg, mesh, args.gaze_batch_per_chip), mesh, chip))
      print(f"compiled {results[-1]['step']} on {args.topology}, mesh {dict(mesh.shape)}", file=sys.stderr, flush=True)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  slices = f" x {args.num_slices} slices" if args.num_slices > 1 else ""
  print(f"{args.config} on {args.topology}{slices} ({len(devices)} chips; roofline from {chip.peak_flops / 1e12:.0f} "
        f"TFLOP/s bf16 and {chip.hbm_bw / 1e9:.0f} GB/s per chip, collectives ignored)")
  print(markdown([row(r) for r in results]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump([dict(r, mesh=list(r["mesh"].values())) for r in results], f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
