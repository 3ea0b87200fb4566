"""ViT speed-up from gazing (docs/design.md, "Gazed ViT"): the stock SigLIP ViT on every patch of every
frame (dense, per-frame full attention) vs the gazed ViT on the gazed multi-scale tokens only
(one call, block-causal), plus the time AutoGaze itself takes to pick those tokens.

  python benchmarks/vit_speedup.py                         # SigLIP2-B/16-224, 16 x 224^2, ~5 min on 2 cores
  python benchmarks/vit_speedup.py --max-size 448 --json vit_speedup.json   # adds 16 x 448^2 (4 tiles)
  python benchmarks/vit_speedup.py --skip-square --tile-set 3840x2160 --ratios 0.05   # a 4K tile set

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


def _dense_time(encoder, pixels, repeats: int, cache: dict, key):
  """(median seconds, temp MiB) of the dense ViT on `pixels` (frames, 3, H, W), cached by key."""
  if key not in cache:
    dense, mib = _compile(encoder.dense, encoder.params, pixels)
    cache[key] = (_median_s(lambda: dense(encoder.params, pixels), repeats), mib)
  return cache[key]


def measure(gazer, encoder, tiles, dense_pixels, ratio: float, repeats: int, gaze_repeats: int,
            attn_type: str, dense_cache: dict, dense_key, bucket: int) -> dict:
  """Times gazing + the gazed ViT on `tiles` (n, T, S, S, 3) uint8 and the dense ViT on
  `dense_pixels` (frames, 3, H, W) (cached under `dense_key`: it does not depend on the ratio)."""
  from autogaze_jax import image as image_lib
  from autogaze_jax.inference import target_scales
  from autogaze_jax.models import gazed_vit

  cfg = encoder.cfg
  gaze_in = np.stack([image_lib.normalize(t) for t in tiles])
  gaze = lambda: target_scales.gaze(gazer, gaze_in, cfg.scales, cfg.patch, ratio, generate_only=True)
  gazes = gaze()  # compile
  gaze_s = _median_s(gaze, gaze_repeats)
  packed = gazed_vit.pack_gazes(gazes["gazing_pos"], gazes["if_padded_gazing"], gazes["num_gazing_each_frame"], bucket)
  args = (encoder.params, image_lib.normalize_siglip(tiles), *(jnp.asarray(a) for a in packed))
  gazed, gazed_mib = _compile(encoder.gazed, *args, attn_type=attn_type)
  gazed_s = _median_s(lambda: gazed(*args), repeats)
  dense_s, dense_mib = _dense_time(encoder, dense_pixels, repeats, dense_cache, dense_key)
  frames, _, h, w = dense_pixels.shape
  return dict(
    tiles=len(tiles), ratio=ratio, bucket=bucket,
    dense_tokens=frames * (h // cfg.patch) * (w // cfg.patch),
    gazed_tokens=int((~gazes["if_padded_gazing"]).sum()), gazed_slots=int(packed[0].size),
    dense_ms=dense_s * 1e3, gazed_ms=gazed_s * 1e3, vit_speedup=dense_s / gazed_s,
    gaze_ms=gaze_s * 1e3, end_to_end_gain=dense_s / (gaze_s + gazed_s),
    dense_temp_mib=dense_mib, gazed_temp_mib=gazed_mib,
  )


def square_rows(gazer, encoder, side: int, frames: int, ratios, args, dense_cache) -> list:
  """A frames x side^2 video: tiled for gazing; the dense ViT at the native resolution."""
  from autogaze_jax import image as image_lib
  from autogaze_jax.inference import tiling

  size = encoder.cfg.scales[-1]
  video = np.random.default_rng(side).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
  tiles, _ = tiling.tile_video(video, (frames, size, size))
  dense = image_lib.normalize_siglip(video)
  # Equal work: the same dense ViT on the 224^2 tiles that are gazed (dense at the native
  # size above attends over the whole frame, more work than the tiles hold).
  tile_px = image_lib.normalize_siglip(tiles.reshape(-1, size, size, 3))
  tiles_s, _ = _dense_time(encoder, tile_px, args.repeats, dense_cache, side if side == size else ("tiles", len(tiles)))
  rows = []
  for r in ratios:
    row = measure(gazer, encoder, tiles, dense, r, args.repeats, args.gaze_repeats, args.attn_type,
                  dense_cache, side, args.bucket)
    row.update(dense_tiles_ms=tiles_s * 1e3, vit_speedup_equal_work=tiles_s * 1e3 / row["gazed_ms"])
    rows.append(dict(row, size=f"{frames}x{side}^2"))
  return rows


def tile_set_rows(gazer, encoder, width: int, height: int, frames: int, ratios, args, dense_cache) -> list:
  """A frames x width x height video as its tile set (e.g. 3840x2160: 18 x 10 = 180 tiles),
  dense = the ViT on every patch of every tile. Both paths cost the same per tile, so
  `--tiles-in-flight` tiles are measured and the totals scaled to the whole set."""
  from autogaze_jax import image as image_lib

  size = encoder.cfg.scales[-1]
  total = -(-width // size) * -(-height // size)
  m = min(args.tiles_in_flight, total)
  tiles = np.random.default_rng(width).integers(0, 256, (m, frames, size, size, 3), dtype=np.uint8)
  dense = image_lib.normalize_siglip(tiles.reshape(m * frames, size, size, 3))
  scale = total / m
  rows = []
  for r in ratios:
    row = measure(gazer, encoder, tiles, dense, r, args.repeats, args.gaze_repeats, args.attn_type,
                  dense_cache, ("tiles", m), args.bucket)
    for k in ("dense_tokens", "gazed_tokens", "gazed_slots"):
      row[k] = int(round(row[k] * scale))
    for k in ("dense_ms", "gazed_ms", "gaze_ms"):
      row[k] *= scale
    row.update(dense_tiles_ms=row["dense_ms"], vit_speedup_equal_work=row["vit_speedup"])
    rows.append(dict(row, tiles=total, size=f"{frames}x{width}x{height}", measured_tiles=m))
  return rows


def _table(rows) -> str:
  head = ("| input | ratio | dense tokens | gazed tokens (slots) | dense ViT ms (native / over tiles) "
          "| gazed ViT ms | ViT speed-up (native / equal work) | gazing ms | end-to-end gain | temp MiB dense / gazed |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  fmt = lambda x: "—" if x is None else f"{x:.0f}"
  for r in rows:
    what = f"{r['tiles']} tile{'s' * (r['tiles'] > 1)}"
    if "measured_tiles" in r:
      what += f"; {r['measured_tiles']} measured, scaled"
    lines.append(
      f"| {r['size']} ({what}) | {r['ratio']:g} | {r['dense_tokens']} "
      f"| {r['gazed_tokens']} ({r['gazed_slots']}) | {r['dense_ms']:.0f} / {r['dense_tiles_ms']:.0f} "
      f"| {r['gazed_ms']:.1f} | {r['vit_speedup']:.1f}x / {r['vit_speedup_equal_work']:.1f}x "
      f"| {r['gaze_ms']:.0f} | {r['end_to_end_gain']:.2f}x "
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
  ap.add_argument("--tile-set", help="also a WIDTHxHEIGHT video as its tile set, e.g. 3840x2160 (180 tiles)")
  ap.add_argument("--tiles-in-flight", type=int, default=4, help="tiles measured for --tile-set (totals are scaled)")
  ap.add_argument("--bucket", type=int, help="gazed sequence padding multiple (default: the ViT config's token_bucket)")
  ap.add_argument("--skip-square", action="store_true", help="only the --tile-set rows")
  ap.add_argument("--json", help="also write the rows to this file")
  args = ap.parse_args(argv)

  from autogaze_jax import AutoGaze
  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.cli import config_files
  from autogaze_jax.inference import encode
  from autogaze_jax.models import vit_config

  cfg = config_files.load(args.vit_config) if args.vit_config else vit_config.vit_config("base16_224")
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  gazer = AutoGaze.from_config(seed=0, mesh=mesh)
  encoder = encode.GazedEncoder(encode.load_vit(cfg, mesh=mesh))
  args.bucket = args.bucket or cfg.token_bucket
  size = cfg.scales[-1]
  first = max(size, (args.min_size or size) // size * size)
  sides = [] if args.skip_square else range(first, max(args.max_size or size, first) + 1, size)
  ratios = [float(r) for r in args.ratios.split(",")]
  rows, dense_cache = [], {}
  groups = [lambda side=side: square_rows(gazer, encoder, side, args.frames, ratios, args, dense_cache) for side in sides]
  if args.tile_set:
    w, h = (int(x) for x in args.tile_set.lower().split("x"))
    groups.append(lambda: tile_set_rows(gazer, encoder, w, h, args.frames, ratios, args, dense_cache))
  for group in groups:
    for row in group():
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
