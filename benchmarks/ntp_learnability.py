"""Can the tiny gaze model learn, by NTP, labels that are a fixed function of the frames?

A check that separates "the model and optimiser cannot pick up what the frames show" from
"the greedy labels carry little that the frames predict". The labels here are content rules:
per frame, the 3 finest-scale patches that changed most since the previous frame (frame 0:
the 3 with the largest pixel spread). They need no reconstructor. The tiny NTP config is trained
on them for each step count, and its greedy gazes (3 per frame) on val clips are compared with
the rule.

  python benchmarks/ntp_learnability.py --workdir runs/ntp_learnability            # ~9 min on 2 cores
  python benchmarks/ntp_learnability.py --workdir DIR --steps 200,1000 --clips 256 --json out.json

Prints, per step count: the last logged NTP loss, the clip-blind floor (the mean entropy of
each (frame, slot)'s label marginal: what a model that ignores the frames reaches), and on val
clips the fraction of the rule's patches the model gazes (chance: 3 / vocabulary).
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


def blind_floor(ids: np.ndarray, vocab: int) -> float:
  """Mean entropy (nats) of each (frame, slot)'s marginal over clips."""
  ents = []
  for t in range(ids.shape[1]):
    for j in range(ids.shape[2]):
      p = np.bincount(ids[:, t, j], minlength=vocab) / ids.shape[0]
      ents.append(-(p[p > 0] * np.log(p[p > 0])).sum())
  return float(np.mean(ents))


def agreement(model_dir: str, clips: np.ndarray, cfg) -> float:
  """Fraction of the rule's patches among the model's PICKS greedy gazes per frame, on `clips`."""
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  _, model = gaze_weights.load_gaze(model_dir, mesh)
  vocab, k, t = cfg.gaze.num_vision_tokens_each_frame, cfg.gaze.decoder.num_multi_token_pred, cfg.clip_len
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(PICKS, k))
  with mesh_lib.use(mesh):
    ids, _ = decoding.generate(model, image_lib.normalize_on_device(jnp.asarray(clips)),
                               jnp.full((t,), PICKS, jnp.int32), jnp.zeros((len(clips), t)), None, 1.0, spec)
  got = np.asarray(ids)[:, :, :PICKS]
  want = np.stack([rule_ids(c, cfg.gaze.scales, vocab) for c in clips])
  hits = [len(set(g) & set(w)) for g, w in zip(got.reshape(-1, PICKS), want.reshape(-1, PICKS))]
  return float(np.mean(hits) / PICKS)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--steps", default="200,1000", help="comma-separated NTP step counts")
  ap.add_argument("--clips", type=int, default=256, help="labelled training clips")
  ap.add_argument("--val-clips", type=int, default=32)
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  cfg = config_files.load("configs/ntp.py:tiny")
  vocab = cfg.gaze.num_vision_tokens_each_frame
  os.makedirs(args.workdir, exist_ok=True)
  labels = os.path.join(args.workdir, "rule_labels.json")
  source = pipeline.make_source(pipeline.for_training(cfg), "train", cfg.seed)
  train_ids = write_labels(labels, source, args.clips, cfg.gaze.scales, vocab)
  val = pipeline.eval_clips(pipeline.for_training(cfg), args.val_clips, cfg.seed)
  rows = []
  for steps in (int(s) for s in args.steps.split(",")):
    run = config_files.load("configs/ntp.py:tiny")
    config_files.apply_overrides(run, [f"--config.labels={labels}", f"--config.steps={steps}",
                                       f"--config.eval.every={steps}", "--config.log_every=10"])
    out = os.path.join(args.workdir, f"ntp_{steps}")
    report = trainer.train(run, out, progress=False)
    rows.append({"steps": steps, "ntp_loss_last": round(report["ntp_loss_last_logged"], 3),
                 "clip_blind_floor": round(blind_floor(train_ids, vocab), 3),
                 "val_rule_agreement": round(agreement(os.path.join(out, "gaze_final"), val, run), 3),
                 "chance_agreement": round(PICKS / vocab, 3)})
    print(json.dumps(rows[-1]), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
