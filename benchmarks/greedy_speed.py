"""Greedy search speed: scoring every candidate gaze of one frame through the whole
reconstructor (one full forward per candidate) against `models/frame_variants.py` (the earlier
frames' keys and values computed once per step), measured in the same run.

  python benchmarks/greedy_speed.py                       # tiny reconstructor, 64 px, ~1 min on 2 cores
  python benchmarks/greedy_speed.py --clips 16 --slots 6 --json greedy_speed.json

Random reconstructor weights (speed does not depend on them); the two paths' losses are checked
equal. Times are jitted, warm, block_until_ready, median of --repeats, one greedy step at frame
t (half-way and last), every candidate of every clip.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import labelling, task


def full_model_losses(recon, video, ids_btg, t, s, cand_bc):
  """The plain way: every candidate's whole gaze set through the whole reconstructor."""
  b, c = cand_bc.shape
  ids = jnp.broadcast_to(ids_btg[None], (c, *ids_btg.shape)).at[:, :, t, s].set(cand_bc.T)
  rep = jnp.broadcast_to(video[None], (c, *video.shape)).reshape(c * b, *video.shape[1:])
  lens = jnp.full((c * b, ids_btg.shape[1]), ids_btg.shape[2], jnp.int32)
  out = task.evaluate(recon, rep, ids.reshape(c * b, *ids_btg.shape[1:]), lens, jnp.reshape(t, (1,)))
  return out["loss_each_frame"][:, 0].reshape(c, b).T


def _seconds(fn, args) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def _median_s(fn, args, repeats: int) -> float:
  """Median wall time of fn(*args) over `repeats` calls, after one warm call."""
  _seconds(fn, args)
  return float(np.median([_seconds(fn, args) for _ in range(repeats)]))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--clips", type=int, default=8)
  ap.add_argument("--frames", type=int, default=8)
  ap.add_argument("--slots", type=int, default=6, help="gaze slots per frame (the search's budget)")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--json", default="", help="also write the rows here")
  args = ap.parse_args()
  cfg = recon_config.recon_config("tiny")
  cfg.scales, cfg.pos_grid = (32, 64), 4
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    recon = Reconstructor(cfg, nnx.Rngs(0))
  vocab = sum(recon_config.tokens_per_scale(cfg))
  b, nt, g = args.clips, args.frames, args.slots
  video = jax.random.normal(jax.random.key(0), (b, nt, 3, 64, 64))
  ids = np.asarray(jax.random.randint(jax.random.key(1), (b, nt, g), 0, vocab))
  cand = jnp.broadcast_to(jnp.arange(vocab, dtype=jnp.int32), (b, vocab))
  graphdef, state = nnx.split(recon)
  full = jax.jit(lambda st, *a: full_model_losses(nnx.merge(graphdef, st), *a))
  reuse = jax.jit(lambda st, *a: labelling.candidate_losses(nnx.merge(graphdef, st), *a, chunk=vocab))
  rows = []
  for t in (nt // 2, nt - 1):
    frame_ids = ids.copy()
    frame_ids[:, t + 1 :] = vocab  # as in the search: later frames not gazed yet
    frame_ids[:, t, g // 2 :] = vocab
    a = (video, jnp.asarray(frame_ids), jnp.int32(t), jnp.int32(g // 2), cand)
    a = (state, *a)
    err = float(jnp.abs(full(*a) - reuse(*a)).max())
    t_full, t_reuse = _median_s(full, a, args.repeats), _median_s(reuse, a, args.repeats)
    rows.append({"frame": t, "clips": b, "candidates": vocab, "slots": g, "full_model_s": round(t_full, 4),
                 "frame_variants_s": round(t_reuse, 4), "speedup": round(t_full / t_reuse, 2), "max_abs_diff": err})
    print(json.dumps(rows[-1]), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
