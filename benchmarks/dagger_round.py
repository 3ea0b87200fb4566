"""Does NTP gain from labels at the states its own gazes reach? One DAgger round, on val.

(The study that led to the NTP stage's DAgger round. Its new labels now come from the stage's
code, `train/ntp/dagger.py`; this script adds the control arm, the same steps on the old labels only.)

Teacher forcing shows the gaze model only the labeller's history; gazing alone it reads its own.
This script takes a trained NTP model and its labelled training clips and:
  1. rolls the model out on every labelled clip, as many gazes per frame as its label has (greedy);
  2. asks the labeller, at every state of those rollouts (the model's gazes of the earlier
     frames and its own picks so far in this frame), which id it would add next: the expert's
     action where the model actually goes;
  3. fine-tunes two copies of the model for the same steps, with the stage's history noise and
     label symmetries: "control" on the original labels only, "dagger" on a mix (each clip of a
     batch from the new labels with probability --mix; those feed the model's own gazes as
     history and score the expert's picks);
  4. scores the starting model and both copies on val clips as the held-out evaluation does
     (ratio to reach eps, paired bootstrap intervals).
The control arm separates the new labels' effect from that of more steps.

  python benchmarks/dagger_round.py --recon runs/mj_g0/recon --labels runs/mj_g0/labels.json \
      --model runs/x_2kn/gaze_final --steps 600 --seeds 1,2      # ~12 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import optax
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import labels as labels_lib
from autogaze_jax.data import pipeline, symmetries
from autogaze_jax.train import clip_stats, heldout, labelling, oracle
from autogaze_jax.train.ntp import dagger
from autogaze_jax.train.ntp import step as ntp_step
from autogaze_jax.weights import gaze as gaze_weights


def fine_tune(model, arms: dict, steps: int, lr: float, mix: float, seed: int, scales, noise: float,
              batch: int = 16):
  """Adam from lr to 1e-5 (linear) on the NTP loss; each clip of a batch comes from arms
  ["dagger"] with probability `mix`, else arms["labels"]; each arm holds clips (N, T, S, S, 3) and
  (N, T, G) targets, fed history, lens (N, T), task losses. Label symmetries (flips, turns,
  colour orders) and history noise as the tiny NTP stage. Trains `model` in place; returns the
  per-step losses."""
  vocab = model.gaze_decoder.vocab - 1
  opt = nnx.Optimizer(model, optax.adam(optax.linear_schedule(lr, 1e-5, steps)), wrt=nnx.Param)
  graphdef, state = nnx.split((model, opt))

  @jax.jit
  def step(state, clips, targets, fed, lens, task_losses, key):
    model, opt = nnx.merge(graphdef, state)

    def loss(model):
      ntp, tlp, _ = ntp_step.loss_terms(model, image_lib.normalize_on_device(clips), targets, lens, task_losses,
                                        key, noise, history_ids=fed)
      return (ntp + tlp).mean()

    value, grads = nnx.value_and_grad(loss)(model)
    opt.update(model, grads)
    return nnx.state((model, opt)), value

  rng = np.random.default_rng(seed)
  n_clips = len(arms["labels"]["lens"])
  history = []
  for i in range(steps):
    pick = rng.choice(n_clips, batch, replace=False)
    from_dagger = rng.random(batch) < mix
    parts = {k: np.where(from_dagger.reshape(-1, *[1] * (arms["labels"][k].ndim - 1)), arms["dagger"][k][pick],
                         arms["labels"][k][pick]) for k in ("targets", "fed", "task_losses")}
    clips = np.empty_like(arms["labels"]["clips"][pick])
    for j, c in enumerate(pick):
      op, colours = symmetries.draw(rng, ("flips", "colours"))
      clips[j], parts["targets"][j] = symmetries.apply(arms["labels"]["clips"][c], parts["targets"][j], op,
                                                       colours, scales, vocab)
      parts["fed"][j] = symmetries.id_permutation(scales, vocab, op)[parts["fed"][j]]
    state, value = step(state, clips, parts["targets"], parts["fed"], arms["labels"]["lens"][pick],
                        parts["task_losses"], jax.random.fold_in(jax.random.key(seed), i))
    history.append(float(value))
  nnx.update((model, opt), state)
  return history


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--recon", required=True, help="the stage-0 workdir the labels were made with")
  ap.add_argument("--labels", required=True, help="the NTP stage's labels file")
  ap.add_argument("--model", required=True, help="the trained NTP model (gaze_final/)")
  ap.add_argument("--config", default="configs/ntp.py:tiny")
  ap.add_argument("--steps", type=int, default=600)
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--mix", type=float, default=0.5, help="share of a batch's clips from the new labels")
  ap.add_argument("--seeds", default="1", help="fine-tune seeds (batch order, symmetries, noise), comma-separated")
  ap.add_argument("--val-clips", type=int, default=64)
  ap.add_argument("--json", default="")
  args = ap.parse_args()
  cfg = config_files.load(args.config)
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  vocab = cfg.gaze.num_vision_tokens_each_frame
  recon = oracle.from_stage0(args.recon, mesh)
  table = labels_lib.read(args.labels)
  keys, clips = [], []
  for key, clip in labelling.source_clips(pipeline.for_training(cfg), cfg.label.num_clips, cfg.seed):
    if labels_lib.key_of(key) in table:
      keys.append(labels_lib.key_of(key))
      clips.append(clip)
  clips = np.stack(clips)
  slots = labels_lib.slot_cap({k: table[k] for k in keys}, 1)
  ids, lens, losses = (np.stack(x) for x in zip(*(labels_lib.to_arrays(table[k], vocab, slots, k) for k in keys)))
  report = {"clips": len(keys), "steps": args.steps, "mix": args.mix}
  t0 = time.perf_counter()
  with mesh_lib.use(mesh):
    start = gaze_weights.load_gaze(args.model, mesh)[1]
    if start.gaze_decoder.k != 1:
      raise SystemExit(f"dagger_round: needs a model with one gaze per decoding step (K = 1), {args.model} "
                       f"has K = {start.gaze_decoder.k}")
    states = dagger.Rollouts(start, slots, 16)(clips, lens)
    search = labelling.GreedySearch(recon, [slots] * clips.shape[1], -np.inf, chunk=cfg.label.chunk)
    targets, task_losses = np.zeros_like(states), np.zeros(states.shape, np.float32)
    for c0 in range(0, len(clips), 16):
      part = slice(c0, c0 + 16)
      targets[part], task_losses[part] = search.follow(clips[part], states[part], lens[part])
  real = states != vocab
  report["new_labels_s"] = round(time.perf_counter() - t0, 1)
  report["expert_agrees_with_model"] = float((targets == states)[real].mean())
  print(f"{len(keys)} clips: rollouts + expert labels {report['new_labels_s']} s; the expert's pick is the "
        f"model's own at {report['expert_agrees_with_model']:.0%} of its states", flush=True)
  arms = {"labels": {"clips": clips, "targets": ids, "fed": ids, "lens": lens, "task_losses": losses},
          "dagger": {"targets": targets, "fed": states, "task_losses": task_losses}}
  val = pipeline.eval_clips(pipeline.for_training(cfg), args.val_clips, cfg.seed)
  curves = heldout.Curves(recon, mesh, val, cfg.eval.ratios, cfg.eval.frames)
  at_eps = lambda model: clip_stats.ratio_at_eps(curves.policy(model), curves.ratios, cfg.eval.eps)
  with mesh_lib.use(mesh):
    result = {"start": at_eps(start)}
    for seed in (int(s) for s in args.seeds.split(",")):
      for arm, mix in (("control", 0.0), ("dagger", args.mix)):
        model = gaze_weights.load_gaze(args.model, mesh)[1]
        t1 = time.perf_counter()
        loss = fine_tune(model, arms, args.steps, args.lr, mix, seed, cfg.gaze.scales,
                         ntp_step.noise_rate(cfg.loss.history_noise))
        result[f"{arm}_seed{seed}"] = at_eps(model)
        print(f"  {arm} seed {seed}: {time.perf_counter() - t1:.0f} s, loss {np.mean(loss[:20]):.3f} -> "
              f"{np.mean(loss[-20:]):.3f}", flush=True)
  print(f"{args.val_clips} val clips, ratio to reach eps = {cfg.eval.eps}")
  report["val"] = {}
  for name, r in result.items():
    row = {"mean": float(r.mean()), "median": float(np.median(r)),
           "minus_start": clip_stats.paired_difference(r, result["start"])}
    if name.startswith("dagger"):
      row["minus_control"] = clip_stats.paired_difference(r, result[name.replace("dagger", "control")])
    report["val"][name] = row
    shown = "".join(f"  {k.replace('_', ' ')} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                    for k, d in row.items() if k.startswith("minus") and name != "start")
    print(f"  {name:>15}  mean {row['mean']:.3f}  median {row['median']:.3f}{shown}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
