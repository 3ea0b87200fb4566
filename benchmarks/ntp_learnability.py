"""Can the tiny gaze model learn, by NTP, labels that are a fixed function of the frames?

A check that separates "the model and optimiser cannot pick up what the frames show" from
"the greedy labels carry little that the frames predict". The labels here are content rules:
per frame, the 3 finest-scale patches that changed most since the previous frame (frame 0:
the 3 with the largest pixel spread). They need no reconstructor. The tiny NTP config is trained
on them for each step count, and its greedy gazes (3 per frame) on val clips are compared with
the rule.

  python benchmarks/ntp_learnability.py --workdir runs/ntp_learnability            # ~9 min on 2 cores
  python benchmarks/ntp_learnability.py --workdir DIR --steps 200,1000 --clips 256 --json out.json
  python benchmarks/ntp_learnability.py --workdir DIR --steps 1000 --override=--config.optimizer.lr=1e-3

Prints, per step count: the NTP loss (mean of the last 5 logged steps) next to the entropy of
each (frame, slot)'s label marginal (about what a model that ignored the frames would reach),
and on val clips the fraction of the rule's patches the model gazes, next to two baselines
that ignore the frames: chance (3 / vocabulary) and the labels' 3 most frequent patches per
frame. Each step count trains in a new folder under --workdir (an existing one is refused).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import pipeline
from autogaze_jax.models import decoding
from autogaze_jax.train import metric_log
from autogaze_jax.train.ntp import trainer
from autogaze_jax.weights import gaze as gaze_weights

PICKS = 3


def rule_ids(clip: np.ndarray, scales, vocab: int) -> np.ndarray:
  """Local ids (T, PICKS) of the rule: finest-scale patches by change since the previous frame
  (frame 0: by pixel standard deviation), largest first."""
  side = vocab_lib.grid_sides(scales, vocab)[-1]
  offset = vocab_lib.scale_offsets(scales, vocab)[-1]
  x = clip.astype(np.float32) / 255
  t, s = x.shape[0], x.shape[1] // side
  patches = x.reshape(t, side, s, side, s, 3).transpose(0, 1, 3, 2, 4, 5).reshape(t, side * side, -1)
  score = np.concatenate([patches[:1].std(-1), np.abs(patches[1:] - patches[:-1]).mean(-1)])
  return offset + np.argsort(-score, axis=-1, kind="stable")[:, :PICKS]


def write_labels(path: str, source, count: int, scales, vocab: int) -> np.ndarray:
  """The rule's labels of the first `count` clips of `source` (labels-file format); returns
  their local ids (count, T, PICKS)."""
  table, all_ids = {}, []
  for i in range(count):
    ids = rule_ids(source.load(i), scales, vocab)
    all_ids.append(ids)
    table[source.key(i)] = {"gazing_pos": [[int(t * vocab + j) for j in row] for t, row in enumerate(ids)],
                            "task_losses": [[0.6, 0.55, 0.5]] * len(ids)}
  with open(path, "w") as f:
    json.dump(table, f)
  return np.stack(all_ids)


def marginal_entropy(ids: np.ndarray, vocab: int) -> float:
  """Mean entropy (nats) of each (frame, slot)'s marginal over clips."""
  ents = []
  for t in range(ids.shape[1]):
    for j in range(ids.shape[2]):
      p = np.bincount(ids[:, t, j], minlength=vocab) / ids.shape[0]
      ents.append(-(p[p > 0] * np.log(p[p > 0])).sum())
  return float(np.mean(ents))


def overlap(got: np.ndarray, want: np.ndarray) -> float:
  """Mean fraction of `want`'s ids (..., PICKS) found in `got`'s, frame by frame."""
  pairs = zip(got.reshape(-1, PICKS), want.reshape(-1, PICKS))
  return float(np.mean([len(set(g) & set(w)) for g, w in pairs]) / PICKS)


def most_frequent(ids: np.ndarray, vocab: int) -> np.ndarray:
  """(T, PICKS): per frame, the PICKS ids the labels hold most often."""
  counts = [np.bincount(ids[:, t].ravel(), minlength=vocab) for t in range(ids.shape[1])]
  return np.stack([np.argsort(-c, kind="stable")[:PICKS] for c in counts])


def agreement(model_dir: str, clips: np.ndarray, want: np.ndarray, cfg) -> float:
  """Fraction of the rule's patches `want` (N, T, PICKS) among the model's PICKS greedy gazes
  per frame, on `clips`."""
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  _, model = gaze_weights.load_gaze(model_dir, mesh)
  k, t = cfg.gaze.decoder.num_multi_token_pred, cfg.clip_len
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(PICKS, k))
  with mesh_lib.use(mesh):
    ids, _ = decoding.generate(model, image_lib.normalize_on_device(jnp.asarray(clips)),
                               jnp.full((t,), PICKS, jnp.int32), jnp.zeros((len(clips), t)), None, 1.0, spec)
  return overlap(np.asarray(ids)[:, :, :PICKS], want)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--steps", default="200,1000", help="comma-separated NTP step counts")
  ap.add_argument("--clips", type=int, default=256, help="labelled training clips")
  ap.add_argument("--val-clips", type=int, default=32)
  ap.add_argument("--json", default="")
  ap.add_argument("--override", action="append", default=[],
                  help="a --config.X=Y override of configs/ntp.py:tiny for every run (repeatable)")
  args = ap.parse_args()
  cfg = config_files.load("configs/ntp.py:tiny")
  vocab = cfg.gaze.num_vision_tokens_each_frame
  os.makedirs(args.workdir, exist_ok=True)
  labels = os.path.join(args.workdir, "rule_labels.json")
  source = pipeline.make_source(pipeline.for_training(cfg), "train", cfg.seed)
  train_ids = write_labels(labels, source, args.clips, cfg.gaze.scales, vocab)
  val = pipeline.eval_clips(pipeline.for_training(cfg), args.val_clips, cfg.seed)
  val_rule = np.stack([rule_ids(c, cfg.gaze.scales, vocab) for c in val])
  frequent = overlap(np.broadcast_to(most_frequent(train_ids, vocab), val_rule.shape), val_rule)
  rows = []
  for steps in (int(s) for s in args.steps.split(",")):
    run = config_files.load("configs/ntp.py:tiny")
    # no reconstructor: the trainer's own evaluation (random weights, one clip) is not read
    config_files.apply_overrides(run, [f"--config.labels={labels}", f"--config.steps={steps}",
                                       f"--config.eval.every={steps}", "--config.eval.num_clips=1",
                                       "--config.log_every=10", *args.override])
    out = os.path.join(args.workdir, f"ntp_{steps}_clips{args.clips}")
    if os.path.exists(out):
      raise SystemExit(f"{out} exists (a finished run would be resumed, not retrained); remove it or "
                       "choose another --workdir")
    trainer.train(run, out, progress=False)
    losses = [r["ntp_loss"] for r in metric_log.read(os.path.join(out, "metrics.jsonl")) if "ntp_loss" in r]
    rows.append({"steps": steps, "ntp_loss_last5": round(float(np.mean(losses[-5:])), 3),
                 "label_marginal_entropy": round(marginal_entropy(train_ids, vocab), 3),
                 "val_rule_agreement": round(agreement(os.path.join(out, "gaze_final"), val, val_rule, run), 3),
                 "chance_agreement": round(PICKS / vocab, 3), "most_frequent_agreement": round(frequent, 3)})
    print(json.dumps(rows[-1]), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
