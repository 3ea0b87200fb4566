"""How close are the greedy labeller's calls? Near-tied picks make arbitrary NTP targets.

Runs the labeller's greedy search (`labelling.GreedySearch`, every candidate, no ε) on the
tiny NTP config's training clips with a stage-0 reconstructor, `--gazes` per frame, and
records at every step the chosen candidate's loss and the runner-up's. Prints per slot (the
s-th gaze of a frame; frame 0 apart from later frames, whose first picks follow what changed):
the median runner-up gap relative to the chosen loss, the fraction of steps whose runner-up is
within 1 % / 5 % of it, and, from the second slot on, the gap as a fraction of what the pick
gained over the loss before it (steps that gained nothing left out of that median).

  python benchmarks/label_margins.py --recon runs/mj_d0/recon --clips 64      # ~30 s on 2 cores
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import pipeline
from autogaze_jax.train import labelling, oracle


def margins(entries: list[dict]) -> dict:
  """{(frame group, slot): stats} of label entries carrying `runner_up_losses`."""
  cells: dict = {}
  for e in entries:
    for t, (ls, rs) in enumerate(zip(e["task_losses"], e["runner_up_losses"])):
      for s, (best, second) in enumerate(zip(ls, rs)):
        gained = ls[s - 1] - best if s else np.nan
        gained = gained if gained > 0 else np.nan  # a pick that gained nothing has no ratio
        cells.setdefault(("frame 0" if t == 0 else "frames 1+", s), []).append((best, second, gained))
  out = {}
  for key, rows in sorted(cells.items()):
    best, second, gained = (np.asarray(c, np.float64) for c in zip(*rows))
    rel = (second - best) / best
    of_gain = (second - best) / gained if key[1] else np.full_like(rel, np.nan)
    out[key] = dict(steps=len(rows), median_rel_gap=float(np.median(rel)), within_1pct=float((rel < 0.01).mean()),
                    within_5pct=float((rel < 0.05).mean()),
                    median_gap_over_gain=None if not key[1] else float(np.nanmedian(of_gain)))
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--recon", required=True, help="a stage-0 workdir (configs/recon.py:tiny)")
  ap.add_argument("--config", default="configs/ntp.py:tiny")
  ap.add_argument("--clips", type=int, default=64)
  ap.add_argument("--gazes", type=int, default=6, help="gazes per frame (tiny labels: 1-6)")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--json", default="", help="also write the table here")
  args = ap.parse_args()

  cfg = config_files.load(args.config)
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  recon = oracle.load_reconstructor(cfg.oracle.model, mesh, workdir=args.recon)
  search = labelling.GreedySearch(recon, [args.gazes] * cfg.clip_len, -np.inf, chunk=cfg.label.chunk)
  clips = [c for _, c in labelling.source_clips(pipeline.for_training(cfg), args.clips, cfg.seed)]
  entries = []
  with mesh_lib.use(mesh):
    for i in range(0, len(clips), args.batch):
      entries += search(np.stack(clips[i:i + args.batch]), call=i, runner_up=True)
  table = margins(entries)
  print("| frames | slot | steps | median runner-up gap / loss | runner-up within 1 % | within 5 % "
        "| median gap / the pick's gain |")
  print("|---|---|---|---|---|---|---|")
  for (group, s), r in table.items():
    gain = "—" if r["median_gap_over_gain"] is None else f"{r['median_gap_over_gain']:.3f}"
    print(f"| {group} | {s + 1} | {r['steps']} | {r['median_rel_gap']:.4f} | {r['within_1pct']:.2f} "
          f"| {r['within_5pct']:.2f} | {gain} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump([dict(frames=g, slot=s + 1, **r) for (g, s), r in table.items()], f, indent=1)


if __name__ == "__main__":
  main()
