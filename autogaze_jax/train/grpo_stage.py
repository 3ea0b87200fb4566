"""Stage 2: GRPO post-training of the gaze model (TRAINING.md §5, §7) over the shared loop.

The gaze model starts from `cfg.init_gaze` (our checkpoint, e.g. the NTP result, or the
official weights) or at random; the reconstructor is frozen, from a stage-0 directory
(`cfg.recon_workdir`) or official weights (`cfg.recon_weights`). Clips come from the Grain
pipeline (`cfg.data`), whose position is checkpointed, so a resumed run sees exactly the
batches it would have seen. Held-out clips (`held_out`, uint8 (N, T, H, W, 3)) default to
the validation clips NTP evaluates on (`pipeline.eval_clips`), and get both evaluations:
`ratio_at_eps` (budget-only greedy gazes, where the policy looks) and `eps_stop_eval` (the
official stop-rule validation, §5.6). Writes metrics.jsonl, curve.png, report.json, ckpt/
(train state) and gaze_final/ (a gaze checkpoint that `AutoGaze.from_pretrained` reads).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from flax import nnx

from autogaze_jax import AutoGaze, checkpointing, distributed, metrics, perceptual, plots, storage
from autogaze_jax import config as config_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.data import pipeline
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import eps_stop_eval, frozen_recon, grpo_rollout, grpo_step, loop, ratio_at_eps
from autogaze_jax.train import state as state_lib


def initial_state(cfg, mesh):
  """(gaze config, graphdef, state, shardings) of a fresh TrainState whose gaze model is
  `cfg.init_gaze` (its config wins over `cfg.gaze`) or random."""
  gaze_cfg = cfg.gaze
  if cfg.init_gaze:
    start = AutoGaze.from_pretrained(cfg.init_gaze, mesh=mesh)
    gaze_cfg = start.config
  config_lib.validate(gaze_cfg)
  tx = state_lib.make_optimizer(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: GazeModel(gaze_cfg, nnx.Rngs(cfg.seed)), tx, mesh)
  if cfg.init_gaze:
    ts = nnx.merge(graphdef, state)
    nnx.update(ts.model, nnx.state(start.model, nnx.Param))
    state = nnx.state(ts)
  return gaze_cfg, graphdef, state, shardings


def _check_pair(gaze_cfg, recon) -> int:
  vocab = gaze_cfg.num_vision_tokens_each_frame
  recon_vocab = sum((s // recon.cfg.patch_size) ** 2 for s in recon.cfg.scales)
  if vocab != recon_vocab or tuple(gaze_cfg.scales) != tuple(recon.cfg.scales):
    raise ValueError(
      f"grpo: the gaze model's vocabulary (scales {tuple(gaze_cfg.scales)}, V={vocab}) differs "
      f"from the reconstructor's (scales {tuple(recon.cfg.scales)}, V={recon_vocab})"
    )
  return vocab


def step_spec(cfg, vocab: int, k: int) -> grpo_step.StepSpec:
  g = cfg.grpo
  rollout = grpo_rollout.make_spec(
    vocab, k, group_size=g.group_size, pilot_ratio=g.pilot_ratio, eps_range=g.eps_range,
    recon_sample_rate=g.recon_sample_rate, top_k=g.top_k, segments=g.decode_segments,
    fixed_budget=g.get("fixed_budget", False), group_chunk=g.get("group_chunk", 0),
    shared_draws=g.get("shared_draws", False),
  )
  return grpo_step.StepSpec(rollout, g.gamma, g.temp_start, g.temp_end, cfg.steps)


def train(cfg, workdir: str, progress: bool = True, source=None, held_out=None) -> dict:
  """Runs GRPO; returns (and writes) the report.

  source: a data source (`pipeline.make_source` protocol: len, key(i), load(i, rng)); default
  `pipeline.make_source(cfg.data, "train", cfg.seed)`. held_out: uint8 (N, T, S, S, 3)
  evaluation clips; default `pipeline.eval_clips(cfg.data, cfg.eval.num_clips, cfg.seed)`.
  """
  data = pipeline.for_training(cfg)
  storage.makedirs(workdir)
  if distributed.is_main():
    storage.write_text(os.path.join(workdir, "config.json"), cfg.to_json(indent=2))
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  if cfg.batch_size % mesh.size:
    raise ValueError(f"grpo: batch_size={cfg.batch_size} clips must be a multiple of the {mesh.size} devices")
  gaze_cfg, graphdef, state, shardings = initial_state(cfg, mesh)
  recon = frozen_recon.load(cfg.recon, mesh, workdir=cfg.recon_workdir, weights=cfg.recon_weights, seed=cfg.seed + 1)
  vocab = _check_pair(gaze_cfg, recon)
  spec = step_spec(cfg, vocab, gaze_cfg.decoder.num_multi_token_pred)
  terms = perceptual.from_config(cfg.perceptual, mesh, cfg.recon_weights)  # the reward's extra terms
  recon_def, recon_state = nnx.split(frozen_recon.Scorer(recon, terms))
  recon_state = jax.device_put(recon_state, mesh_lib.replicated(mesh))
  jitted = grpo_step.make_step(graphdef, shardings, mesh, recon_def, spec)
  calls = [0]

  def step_fn(st, batch, key):
    st, m = jitted(st, batch, key, recon_state)
    calls[0] += 1
    if calls[0] % cfg.log_every == 0:
      grpo_step.check_finite(m, calls[0])
    return st, m

  if source is None:
    source = pipeline.make_source(data, "train", cfg.seed)
  batches = iter(pipeline.make_dataset(data, source, batch_size=cfg.batch_size, seed=cfg.seed))
  batch_sh = mesh_lib.batch_sharding(mesh, 5)
  e = cfg.eval
  if held_out is None:
    held_out = pipeline.eval_clips(data, e.num_clips, cfg.seed)
  by_budget = ratio_at_eps.make_evaluator(graphdef, recon, mesh, held_out, eps=e.eps, ratios=e.ratios, frames=e.frames,
                                          picture_dir=os.path.join(workdir, "pictures"))
  cap = int(vocab_lib.budgets_from_ratio(e.cap_ratio, 1, vocab)[0])
  by_stop = eps_stop_eval.make_evaluator(graphdef, recon, mesh, held_out, eps=e.eps, cap=cap, frames=e.frames)
  evaluate = lambda st, i: {**by_budget(st, i), **by_stop(st, i)}
  stage = loop.Stage(
    step_fn=step_fn,
    host_batch=lambda i: next(batches)["video"],  # the iterator's position is checkpointed
    put_batch=lambda x: jax.make_array_from_process_local_data(batch_sh, x),
    evaluate=evaluate, clips_per_step=cfg.batch_size, data_iterator=batches,
  )
  t0 = time.perf_counter()
  with mesh_lib.use(mesh):
    state = loop.run(stage, state, workdir=workdir, steps=cfg.steps, seed=cfg.seed, log_every=cfg.log_every,
                     eval_every=e.every, checkpoint_every=cfg.checkpoint_every, progress=progress)
  wall = time.perf_counter() - t0
  final = os.path.join(workdir, "gaze_final")
  if not checkpointing.is_checkpoint(final):
    checkpointing.save(final, nnx.state(nnx.merge(graphdef, state).model, nnx.Param), gaze_cfg)
  return _report(workdir, cfg, wall)


def _report(workdir: str, cfg, wall: float) -> dict:
  rows = metrics.read(os.path.join(workdir, "metrics.jsonl"))
  train_rows = [r for r in rows if "reward_mean" in r]
  evals = [r for r in rows if "eval_ratio_at_eps" in r]
  if distributed.is_main():
    plots.curves(os.path.join(workdir, "curve.png"), rows,
                 ["reward_mean", "reward_vs_random", "recon_loss", "eval_ratio_at_eps", "eval_gaze_ratio_eps_stop"],
                 "GRPO: training reward and held-out metrics")
  tenth = max(1, len(train_rows) // 10)
  mean = lambda rs, k: float(np.mean([r[k] for r in rs])) if rs else None
  report = {
    "steps": cfg.steps, "wall_s": round(wall, 1),
    "reward_mean_first_10pct": mean(train_rows[:tenth], "reward_mean"),
    "reward_mean_last_10pct": mean(train_rows[-tenth:], "reward_mean"),
    # the same, minus a random rollout's reward on the same clips, frames and budgets
    "reward_vs_random_first_10pct": mean(train_rows[:tenth], "reward_vs_random"),
    "reward_vs_random_last_10pct": mean(train_rows[-tenth:], "reward_vs_random"),
    "eval_first": {k: v for k, v in evals[0].items() if k.startswith("eval_")} if evals else None,
    "eval_final": {k: v for k, v in evals[-1].items() if k.startswith("eval_")} if evals else None,
    "gaze_checkpoint": os.path.join(workdir, "gaze_final"),
  }
  if distributed.is_main():
    storage.write_json(os.path.join(workdir, "report.json"), report)
  return report
