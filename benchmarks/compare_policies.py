"""Gaze models side by side on more val clips than training evaluates, and where their losses go.

Scores trained gaze models (and random gazes, and optionally the greedy oracle) on the first
`--clips` val (dev) clips with a stage-0 reconstructor, as the held-out evaluation does
(`train/heldout.Curves`, greedy gazes at a fixed number per frame). Prints per policy the ratio
needed to reach ε (mean, median), its paired difference with the first model (95 % bootstrap
over clips) and, with `--per-frame`, the mean loss at 1 .. 6 gazes per frame on frame 0 alone
and on the later evaluated frames alone: the first frame is a whole scene to uncover, the later
ones are what changed and what is still unseen, and a policy can fail at one and not the other.

  python benchmarks/compare_policies.py --recon runs/mj_g0/recon \
      --models runs/mj_g0/ntp/gaze_final,runs/ntp_k1/gaze_final --clips 64          # ~1 min
  python benchmarks/compare_policies.py --recon R --models A,B --clips 32 --per-frame --oracle
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import pipeline
from autogaze_jax.train import clip_stats, heldout, oracle
from autogaze_jax.weights import gaze as gaze_weights

PER_FRAME_RATIOS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # 1 .. 6 gazes per frame at V = 20


def curves(recon, mesh, clips, ratios, frames, models: dict, with_oracle: bool, eps: float,
           oracle_max_ratio: float) -> tuple[dict, list, tuple]:
  """{policy: (N, budgets) losses} on `frames` of random gazes, each of `models` ({name: loaded
  gaze model}) and the oracle if asked, the grid's ratios and its gazes per frame. The
  oracle searches every clip up to `oracle_max_ratio`, and past it only the clips that have not
  reached `eps` (as the main job's evaluation does)."""
  cv = heldout.Curves(recon, mesh, clips, ratios, frames)
  out = {"random": cv.random()}
  for name, model in models.items():
    out[name] = cv.policy(model)
  if with_oracle:
    out["oracle"] = cv.oracle(max_ratio=oracle_max_ratio, eps=eps)[0]
  return out, cv.ratios, cv.budgets


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--recon", required=True, help="a stage-0 workdir (the frozen reconstructor)")
  ap.add_argument("--models", required=True, help="comma-separated gaze model folders (gaze_final/)")
  ap.add_argument("--clips", type=int, default=64, help="val clips (the first N)")
  ap.add_argument("--config", default="configs/ntp.py:tiny", help="the config whose data, ε and grid are used")
  ap.add_argument("--per-frame", action="store_true", help="also frame 0 and the later frames apart")
  ap.add_argument("--oracle", action="store_true", help="also the greedy oracle (slow: a search per budget)")
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  cfg = config_files.load(args.config)
  paths = list(dict.fromkeys(m for m in args.models.split(",") if m))
  if {"random", "oracle"} & set(paths):
    raise SystemExit("--models: 'random' and 'oracle' name the baselines; give model folders")
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  models = {path: gaze_weights.load_gaze(path, mesh)[1] for path in paths}  # loaded once, scored on every grid
  recon = oracle.from_stage0(args.recon, mesh)
  clips = pipeline.eval_clips(pipeline.for_training(cfg), args.clips, cfg.seed)
  eps = cfg.eval.eps
  cap = cfg.eval.get("oracle_max_ratio", 0.3)
  losses, ratios, _ = curves(recon, mesh, clips, cfg.eval.ratios, cfg.eval.frames, models, args.oracle, eps, cap)
  at_eps = {k: clip_stats.ratio_at_eps(v, ratios, eps) for k, v in losses.items()}
  report = {"clips": args.clips, "eps": eps, "frames": list(cfg.eval.frames), "policies": {}}
  print(f"{args.clips} val clips, ratio to reach eps = {eps} on frames {tuple(cfg.eval.frames)}")
  for name, r in at_eps.items():
    row = {"ratio_mean": float(r.mean()), "ratio_median": float(np.median(r))}
    if paths and name != paths[0]:
      row["minus_first_model"] = clip_stats.paired_difference(r, at_eps[paths[0]])
    report["policies"][name] = row
    diff = row.get("minus_first_model")
    shown = "" if diff is None else "  minus first model {:+.3f} [{:+.3f}, {:+.3f}]".format(diff["mean"], *diff["ci95"])
    print(f"  {name[-40:]:>40}  mean {row['ratio_mean']:.3f}  median {row['ratio_median']:.3f}{shown}")
  if args.per_frame:
    later = tuple(f for f in cfg.eval.frames if f > 0)
    report["per_frame"] = {}
    for label, frames in (("frame 0", (0,)), (f"frames {later}", later)):
      # every clip is searched at every budget here (cap = the grid's end), so no mean skips a clip
      per, _, budgets = curves(recon, mesh, clips, PER_FRAME_RATIOS, frames, models, args.oracle, eps,
                               max(PER_FRAME_RATIOS))
      print(f"mean loss on {label} at {list(budgets)} gazes per frame")
      report["per_frame"][label] = {k: np.nanmean(v, 0).tolist() for k, v in per.items()}
      for name, v in report["per_frame"][label].items():
        print(f"  {name[-40:]:>40}  " + " ".join(f"{x:.3f}" for x in v))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
