"""bfloat16 against float32 gazing: the fraction of frames whose gaze set is identical, and the
speed of each, on the reference clip of the official code's parity data (released
architecture, weights of the parity files).

  python benchmarks/bf16_agreement.py --parity ../shared/data/parity            # ~2 min on 2 cores
  python benchmarks/bf16_agreement.py --parity DIR --ratios 0.75,0.1 --json out.json

On a CPU bf16 arithmetic is emulated and slow; the speed column matters on accelerators.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np


def official_folder(parity: str, name: str = "gaze_seed0") -> str:
  """The parity weights laid out like a downloaded release (model.safetensors + config.json)."""
  d = tempfile.mkdtemp(prefix="bf16_agreement_")
  os.symlink(os.path.abspath(os.path.join(parity, f"{name}.safetensors")), os.path.join(d, "model.safetensors"))
  with open(os.path.join(parity, f"{name}_config.json")) as f:
    cfg = json.load(f)["hf_config"]
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(cfg, f)
  return d


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--parity", required=True, help="folder of the parity data (clip16.npz, gaze_seed0.*)")
  ap.add_argument("--ratios", default="0.75,0.1")
  ap.add_argument("--json", default="")
  args = ap.parse_args(argv)
  from autogaze_jax import AutoGaze, vocab
  from autogaze_jax import mesh as mesh_lib

  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  full = AutoGaze.from_pretrained(official_folder(args.parity), mesh=mesh)
  gazers = {"float32": full, "bfloat16": full.with_precision("bfloat16")}
  video = np.load(os.path.join(args.parity, "clip16.npz"))["video"]
  rows = []
  for ratio in (float(r) for r in args.ratios.split(",")):
    budgets = vocab.budgets_from_ratio(ratio, video.shape[1], 265)
    out, secs = {}, {}
    for name, g in gazers.items():
      g.generate(video, budgets, None)  # compile
      t0 = time.perf_counter()
      out[name] = g.generate(video, budgets, None)
      secs[name] = time.perf_counter() - t0
    (i32, n32), (i16, _) = out["float32"], out["bfloat16"]
    same = [set(a[:n]) == set(b[:n]) for a, b, n in zip(i32[0], i16[0], n32[0])]
    rows.append(dict(gazing_ratio=ratio, frames_same_gaze_set=round(float(np.mean(same)), 3),
                     ids_equal_in_order=round(float(np.mean(i32 == i16)), 3),
                     float32_s=round(secs["float32"], 2), bfloat16_s=round(secs["bfloat16"], 2)))
    print(json.dumps(rows[-1]), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": str(jax.devices()[0].device_kind), "results": rows}, f, indent=1)


if __name__ == "__main__":
  main()
