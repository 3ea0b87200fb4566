"""ViT speed-up from gazing (TRAINING.md §9.6): the stock SigLIP ViT on every patch of every
frame (dense, per-frame full attention) vs the gazed ViT on the gazed multi-scale tokens only
(one call, block-causal), plus the time AutoGaze itself takes to pick those tokens.

  python benchmarks/vit_speedup.py                         # SigLIP2-B/16-224, 16 x 224^2, ~5 min on 2 cores
  python benchmarks/vit_speedup.py --max-size 448 --json vit_speedup.json   # adds 16 x 448^2 (4 tiles)

Random weights everywhere (the released gaze architecture, no task-loss requirement, so each
frame uses its whole budget int(ratio * 265)); latencies are jitted, warm, block_until_ready,
median of --repeats. Memory is XLA's compiled temp buffer size (memory_analysis()).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def _median_s(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _compile(jitted, *args, **static):
  """(compiled executable, XLA temp buffer MiB or None): compiled once, timed and measured."""
  compiled = jitted.lower(*args, **static).compile()
  try:
    mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
  except Exception:  # not every backend reports it
    mib = None
  return compiled, mib


def measure(gazer, encoder, side: int, frames: int, ratio: float, repeats: int, gaze_repeats: int,
            attn_type: str, dense_cache: dict) -> dict:
  from autogaze_jax import preprocessing, target_scales, tiling
  from autogaze_jax.models import gazed_vit

  cfg = encoder.cfg
  size = cfg.scales[-1]
  video = np.random.default_rng(side).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
  tiles, _ = tiling.tile_video(video, (frames, size, size))
  gaze_in = np.stack([preprocessing.normalize(t) for t in tiles])
  gaze = lambda: target_scales.gaze(gazer, gaze_in, cfg.scales, cfg.patch, ratio, generate_only=True)
  gazes = gaze()  # compile
  gaze_s = _median_s(gaze, gaze_repeats)
  packed = gazed_vit.pack_gazes(gazes["gazing_pos"], gazes["if_padded_gazing"],
                                gazes["num_gazing_each_frame"], cfg.token_bucket)
  args = (encoder.params, gazed_vit.normalize_uint8(tiles), *(jnp.asarray(a) for a in packed))
  gazed, gazed_mib = _compile(encoder.gazed, *args, attn_type=attn_type)
  gazed_s = _median_s(lambda: gazed(*args), repeats)
  if side not in dense_cache:  # the dense baseline does not depend on the ratio
    pixels = gazed_vit.normalize_uint8(video)  # (T, 3, side, side), native resolution
    dense, dense_mib = _compile(encoder.dense, encoder.params, pixels)
    dense_cache[side] = (_median_s(lambda: dense(encoder.params, pixels), repeats), dense_mib)
  dense_s, dense_mib = dense_cache[side]
  real = int((~gazes["if_padded_gazing"]).sum())
  return dict(
    size=f"{frames}x{side}^2", tiles=len(tiles), ratio=ratio,
    dense_tokens=frames * (side // cfg.patch) ** 2, gazed_tokens=real, gazed_slots=int(packed[0].size),
    dense_ms=dense_s * 1e3, gazed_ms=gazed_s * 1e3, vit_speedup=dense_s / gazed_s,
    gaze_ms=gaze_s * 1e3, end_to_end_gain=dense_s / (gaze_s + gazed_s),
    dense_temp_mib=dense_mib, gazed_temp_mib=gazed_mib,
  )


def _table(rows) -> str:
  head = ("| input | ratio | dense tokens | gazed tokens (slots) | dense ViT ms | gazed ViT ms | ViT speed-up "
          "| gazing ms | end-to-end gain | temp MiB dense / gazed |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  fmt = lambda x: "—" if x is None else f"{x:.0f}"
  for r in rows:
    lines.append(
      f"| {r['size']} ({r['tiles']} tile{'s' * (r['tiles'] > 1)}) | {r['ratio']:g} | {r['dense_tokens']} "
      f"| {r['gazed_tokens']} ({r['gazed_slots']}) | {r['dense_ms']:.0f} | {r['gazed_ms']:.1f} "
      f"| {r['vit_speedup']:.1f}x | {r['gaze_ms']:.0f} | {r['end_to_end_gain']:.2f}x "
      f"| {fmt(r['dense_temp_mib'])} / {fmt(r['gazed_temp_mib'])} |"
    )
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--vit-config", help="configs/vit.py[:variant] (default: base16_224)")
  ap.add_argument("--ratios", default="1.0,0.25,0.1,0.05,0.01")
  ap.add_argument("--max-size", type=int, help="largest square frame side (a multiple of the ViT's frame size)")
  ap.add_argument("--min-size", type=int, help="smallest square frame side (default: the ViT's frame size)")
  ap.add_argument("--frames", type=int, default=16)
  ap.add_argument("--repeats", type=int, default=5, help="timed ViT calls per point (median)")
  ap.add_argument("--gaze-repeats", type=int, default=1, help="timed gazing calls per point (median)")
  ap.add_argument("--attn-type", default="block_causal")
  ap.add_argument("--json", help="also write the rows to this file")
  args = ap.parse_args(argv)

  from autogaze_jax import AutoGaze, cli, encode, vit_config
  from autogaze_jax import mesh as mesh_lib

  cfg = cli.load_config_file(args.vit_config) if args.vit_config else vit_config.vit_config("base16_224")
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  gazer = AutoGaze.from_config(seed=0, mesh=mesh)
  encoder = encode.GazedEncoder(encode.load_vit(cfg, mesh=mesh))
  size = cfg.scales[-1]
  first = max(size, (args.min_size or size) // size * size)
  sides = range(first, max(args.max_size or size, first) + 1, size)
  rows, dense_cache = [], {}
  for side in sides:
    for ratio in (float(r) for r in args.ratios.split(",")):
      row = measure(gazer, encoder, side, args.frames, ratio, args.repeats, args.gaze_repeats,
                    args.attn_type, dense_cache)
      rows.append(row)
      print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
  print(f"\ndevice: {jax.devices()[0].device_kind}; ViT: {cfg.hidden}-wide, {cfg.layers} layers, patch {cfg.patch}, "
        f"scales {'+'.join(map(str, cfg.scales))}; attention {args.attn_type}\n")
  print(_table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": jax.devices()[0].device_kind, "vit": cfg.to_dict(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
