"""Stage 0's trainer: the reconstructor on random gazes (the step: `train/recon/step.py`).
Clips come from the Grain pipeline (`config.data`), whose position is checkpointed, so a
resumed run sees exactly the batches it would have seen; held-out clips get fixed random gazes
at each evaluation ratio.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import distributed, pictures
from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import pipeline
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import loop, metric_log, optim, oracle, task
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.recon import step as recon_step


def eval_l1(graphdef, state, video_u8, ids, lens, frames):
  """Per-frame L1 of the given frames of held-out clips."""
  model = nnx.merge(graphdef, state).model
  video = image_lib.normalize_on_device(video_u8)
  out = task.evaluate(model, video, ids, lens, frames)
  return out["l1_each_frame"].mean(), out["reconstruction"][0], video[0, frames]


def train(cfg, workdir: str, progress: bool = True) -> dict:
  """Runs stage 0; writes metrics.jsonl, curve.png, reconstructions.png, report.json, ckpt/
  and recon_final/ (the reconstructor, parameters only: what the oracle of later stages reads)."""
  recon_config.validate(cfg.model)
  mesh = loop.begin(cfg, workdir)
  main = distributed.is_main()  # only process 0 writes files; every process returns the report
  vocab, slots = recon_step.vocab_and_slots(cfg)
  tx = optim.make(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: Reconstructor(cfg.model, nnx.Rngs(cfg.seed)), tx, mesh)
  step, batch_sh = recon_step.make_step(graphdef, shardings, mesh, cfg)
  # Optional frozen perceptual teachers (official: DINOv2-reg 0.3 + SigLIP2 0.3)
  frozen = oracle.replicated_state(oracle.load_teachers(cfg.perceptual, mesh), mesh)
  data = pipeline.for_training(cfg)
  batches = iter(pipeline.make_dataset(data, pipeline.make_source(data, "train", cfg.seed),
                                       batch_size=cfg.batch_size, seed=cfg.seed))

  def host_batch(i):  # the iterator's position is checkpointed, so a resumed run continues it
    return {"video": next(batches)["video"]}

  def put_batch(x):
    return {k: jax.make_array_from_process_local_data(batch_sh[k], v) for k, v in x.items()}

  # Held-out clips (the validation split), fixed gazes.
  held = pipeline.eval_clips(data, cfg.eval.num_clips, cfg.seed)
  held_ids, held_lens = [], []
  for r in cfg.eval.ratios:
    ids, lens = task.random_gazes(jax.random.key(123), cfg.eval.num_clips, cfg.clip_len, vocab, slots, r, r)
    held_ids.append(ids)
    held_lens.append(lens)
  ev = jax.jit(functools.partial(eval_l1, graphdef))
  held_dev = jax.device_put(held, mesh_lib.replicated(mesh))
  eval_frames = jnp.asarray([f for f in cfg.eval.frames if f < cfg.clip_len])
  last_pictures = {}

  def evaluate(state, i):
    out = {}
    for r, ids, lens in zip(cfg.eval.ratios, held_ids, held_lens):
      l1, pred, target = ev(state, held_dev, ids, lens, eval_frames)
      out[f"eval_l1_ratio_{r:g}"] = l1
      last_pictures[r] = (np.asarray(pred), np.asarray(target))
    if main:  # the picture of every evaluation, pictures/reconstructions_step<N>.png
      r = cfg.eval.ratios[-1]
      pictures.reconstructions(os.path.join(workdir, "pictures", f"reconstructions_step{i:06d}.png"),
                            last_pictures[r][1], last_pictures[r][0], f"step {i}: held-out clip, random gazes at ratio {r:g}")
    return out

  t0 = time.perf_counter()
  stage = loop.Stage(step_fn=step, host_batch=host_batch, put_batch=put_batch, evaluate=evaluate,
                     clips_per_step=cfg.batch_size, data_iterator=batches, frozen=frozen,
                     tokens_per_step=cfg.batch_size * cfg.clip_len * vocab)
  with mesh_lib.use(mesh):
    state = loop.run(stage, state, workdir=workdir, steps=cfg.steps, seed=cfg.seed, log_every=cfg.log_every,
                     eval_every=cfg.eval.every, checkpoint_every=cfg.checkpoint_every, progress=progress,
                     profile=cfg.get("profile_steps", ""))
  final = loop.export_model(workdir, oracle.FINAL_MODEL, nnx.merge(graphdef, state).model, cfg.model)
  wall = time.perf_counter() - t0
  rows = metric_log.read(os.path.join(workdir, "metrics.jsonl"))
  keys = [f"eval_l1_ratio_{r:g}" for r in cfg.eval.ratios]
  if main:
    pictures.curves(os.path.join(workdir, "curve.png"), rows, ["l1"] + keys, "reconstructor stage 0: per-frame L1")
  if last_pictures and main:
    r = cfg.eval.ratios[-1]
    pred, target = last_pictures[r]
    pictures.reconstructions(os.path.join(workdir, "reconstructions.png"), target, pred,
                          f"held-out clip, random gazes at ratio {r:g}")
  eval_rows = [r for r in rows if keys[0] in r]
  report = {
    "steps": cfg.steps, "wall_s": round(wall, 1),
    "eval_l1_untrained": {k: eval_rows[0][k] for k in keys} if eval_rows else None,
    "eval_l1_final": {k: eval_rows[-1][k] for k in keys} if eval_rows else None,
    "model": final,
  }
  return loop.finish(workdir, report)
