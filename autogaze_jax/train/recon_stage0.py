"""Stage 0: training the reconstructor on random multi-scale gaze patterns (TRAINING.md
§1.11): per clip and frame a gazing ratio ~ U[min, max], that many distinct random tokens of
the V-token vocabulary; the loss is the per-frame reconstruction loss of
int(T * recon_sample_rate) random frames. Clips come from the Grain pipeline (`config.data`),
whose position is checkpointed, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from autogaze_jax import distributed, storage
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import metrics, perceptual, plots, preprocessing, recon_config, reconstruction_task
from autogaze_jax.data import pipeline
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import loop
from autogaze_jax.train import state as state_lib


def random_gazes(key, batch: int, frames: int, vocab: int, slots: int, rmin: float, rmax: float):
  """ids (B, T, slots) of distinct random tokens, PAD = vocab beyond each frame's count."""
  k1, k2 = jax.random.split(key)
  ratio = jax.random.uniform(k2, (batch, frames), minval=rmin, maxval=rmax)
  count = jnp.clip((ratio * vocab).astype(jnp.int32), 1, slots)
  return reconstruction_task.random_ids(k1, count, vocab, slots), jnp.full((batch, frames), slots, jnp.int32)


def train_step(graphdef, state, video_u8, key, percep_states, *, cfg, vocab, slots, percep_defs):
  ts = nnx.merge(graphdef, state)
  terms = [(w, nnx.merge(gd, st)) for (w, gd), st in zip(percep_defs, percep_states)]
  video = preprocessing.normalize_on_device(video_u8)
  k_gaze, k_frames = jax.random.split(key)
  ids, lens = random_gazes(k_gaze, video.shape[0], video.shape[1], vocab, slots, cfg.gaze.ratio_min, cfg.gaze.ratio_max)
  frames = reconstruction_task.sample_frames(k_frames, video.shape[1], cfg.model.recon_sample_rate)
  model_graph, params, rest = nnx.split(ts.model, nnx.Param, ...)

  def loss_fn(p):
    model = nnx.merge(model_graph, p, rest)
    out = reconstruction_task.evaluate(model, video, ids, lens, frames, perceptual=terms)
    return out["loss"].mean(), out

  (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  ts.opt.update(ts.model, grads)
  m = {"loss": loss, "l1": out["l1_each_frame"].mean(), "grad_norm": optax.global_norm(grads),
       "gaze_ratio": out["metrics"]["avg_gazing_ratio_per_frame"]}
  return nnx.state(ts), m


def vocab_and_slots(cfg) -> tuple[int, int]:
  """V tokens per frame, and the static gaze slots per frame (ratio_max * V)."""
  vocab = sum(recon_config.tokens_per_scale(cfg.model))
  return vocab, max(1, int(cfg.gaze.ratio_max * vocab))


def make_step(graphdef, shardings, mesh, cfg, percep_defs=()):
  """jit with shardings: (state, uint8 clips (B, T, H, W, 3), key, perceptual states) ->
  (state, metrics); the state is donated, the clips split over the mesh, the rest replicated."""
  vocab, slots = vocab_and_slots(cfg)
  repl = mesh_lib.replicated(mesh)
  return jax.jit(
    functools.partial(train_step, graphdef, cfg=cfg, vocab=vocab, slots=slots, percep_defs=percep_defs),
    in_shardings=(shardings, mesh_lib.batch_sharding(mesh, 5), repl, repl), out_shardings=(shardings, repl),
    donate_argnums=0,
  )



def eval_l1(graphdef, state, video_u8, ids, lens, frames):
  """Per-frame L1 of the given frames of held-out clips."""
  model = nnx.merge(graphdef, state).model
  video = preprocessing.normalize_on_device(video_u8)
  out = reconstruction_task.evaluate(model, video, ids, lens, frames)
  return out["l1_each_frame"].mean(), out["reconstruction"][0], video[0, frames]


def train(cfg, workdir: str, progress: bool = True) -> dict:
  """Runs stage 0 and writes metrics.jsonl, curve.png, reconstructions.png, report.json."""
  recon_config.validate(cfg.model)
  storage.makedirs(workdir)
  main = distributed.is_main()  # only process 0 writes files; every process returns the report
  if main:
    storage.write_text(os.path.join(workdir, "config.json"), cfg.to_json(indent=2))
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  vocab, slots = vocab_and_slots(cfg)
  tx = state_lib.make_optimizer(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: Reconstructor(cfg.model, nnx.Rngs(cfg.seed)), tx, mesh)
  batch_sh = mesh_lib.batch_sharding(mesh, 5)
  repl = mesh_lib.replicated(mesh)
  # Optional frozen perceptual teachers (official: DINOv2-reg 0.3 + SigLIP2 0.3), passed as
  # replicated arguments rather than baked into the program as constants.
  terms = perceptual.from_config(cfg.perceptual, mesh)
  percep_defs, percep_states = [], []
  for w, extractor in terms:
    gd, st = nnx.split(extractor)
    percep_defs.append((w, gd))
    percep_states.append(jax.device_put(st, repl))
  jitted = make_step(graphdef, shardings, mesh, cfg, tuple(percep_defs))
  step = lambda st, batch, key: jitted(st, batch, key, tuple(percep_states))
  data = pipeline.for_training(cfg)
  batches = iter(pipeline.make_dataset(data, pipeline.make_source(data, "train", cfg.seed),
                                       batch_size=cfg.batch_size, seed=cfg.seed))

  def host_batch(i):  # the iterator's position is checkpointed, so a resumed run continues it
    return next(batches)["video"]

  def put_batch(x):
    return jax.make_array_from_process_local_data(batch_sh, x)

  # Held-out clips (the validation split), fixed gazes.
  held = pipeline.eval_clips(data, cfg.eval.num_clips, cfg.seed)
  held_ids, held_lens = [], []
  for r in cfg.eval.ratios:
    ids, lens = random_gazes(jax.random.key(123), cfg.eval.num_clips, cfg.clip_len, vocab, slots, r, r)
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
      plots.reconstructions(os.path.join(workdir, "pictures", f"reconstructions_step{i:06d}.png"),
                            last_pictures[r][1], last_pictures[r][0], f"step {i}: held-out clip, random gazes at ratio {r:g}")
    return out

  t0 = time.perf_counter()
  stage = loop.Stage(step_fn=step, host_batch=host_batch, put_batch=put_batch, evaluate=evaluate,
                     clips_per_step=cfg.batch_size, data_iterator=batches)
  with mesh_lib.use(mesh):
    loop.run(stage, state, workdir=workdir, steps=cfg.steps, seed=cfg.seed, log_every=cfg.log_every,
             eval_every=cfg.eval.every, checkpoint_every=cfg.checkpoint_every, progress=progress)
  wall = time.perf_counter() - t0
  rows = metrics.read(os.path.join(workdir, "metrics.jsonl"))
  keys = [f"eval_l1_ratio_{r:g}" for r in cfg.eval.ratios]
  if main:
    plots.curves(os.path.join(workdir, "curve.png"), rows, ["l1"] + keys, "reconstructor stage 0: per-frame L1")
  if last_pictures and main:
    r = cfg.eval.ratios[-1]
    pred, target = last_pictures[r]
    plots.reconstructions(os.path.join(workdir, "reconstructions.png"), target, pred,
                          f"held-out clip, random gazes at ratio {r:g}")
  evals = [r for r in rows if keys[0] in r]
  report = {
    "steps": cfg.steps, "wall_s": round(wall, 1),
    "eval_l1_untrained": {k: evals[0][k] for k in keys} if evals else None,
    "eval_l1_final": {k: evals[-1][k] for k in keys} if evals else None,
  }
  if main:
    storage.write_json(os.path.join(workdir, "report.json"), report)
  return report
