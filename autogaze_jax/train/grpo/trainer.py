"""Stage 2: GRPO post-training of the gaze model (docs/design.md, "GRPO") over the shared loop.

The gaze model starts from `cfg.init_gaze` (our checkpoint, e.g. the NTP result, or the
official weights) or at random; the oracle (`cfg.oracle`: reconstructor and perceptual
teachers) is frozen. Clips come from the Grain
pipeline (`cfg.data`), whose position is checkpointed, so a resumed run sees exactly the
batches it would have seen. Held-out clips (`held_out`, uint8 (N, T, H, W, 3)) default to
the validation clips NTP evaluates on (`pipeline.eval_clips`), and get both evaluations:
`evals.ratio_evaluator` (budget-only greedy gazes, where the policy looks) and
`evals.stop_rule_evaluator` (the official stop-rule validation, docs/design.md, "Evaluation"). Writes metrics.jsonl, curve.png, report.json, ckpt/
(train state) and gaze_final/ (a gaze checkpoint that `AutoGaze.from_pretrained` reads).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from flax import nnx

from autogaze_jax import distributed, pictures
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.data import pipeline
from autogaze_jax.models import gaze_config, recon_config
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import evals, loop, metric_log, optim, oracle
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.grpo import step as grpo_step
from autogaze_jax.weights import gaze as gaze_weights


def initial_state(cfg, mesh):
  """(gaze config, graphdef, state, shardings) of a fresh TrainState whose gaze model is
  `cfg.init_gaze` (its config wins over `cfg.gaze`) or random."""
  gaze_cfg, start = cfg.gaze, None
  if cfg.init_gaze:
    gaze_cfg, start = gaze_weights.load_gaze(cfg.init_gaze, mesh)
  gaze_config.validate(gaze_cfg)
  tx = optim.make(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: GazeModel(gaze_cfg, nnx.Rngs(cfg.seed)), tx, mesh)
  if start is not None:
    ts = nnx.merge(graphdef, state)
    nnx.update(ts.model, nnx.state(start, nnx.Param))
    state = nnx.state(ts)
  return gaze_cfg, graphdef, state, shardings


def _check_pair(gaze_cfg, recon_cfg) -> int:
  vocab = gaze_cfg.num_vision_tokens_each_frame
  recon_vocab = sum(recon_config.tokens_per_scale(recon_cfg))
  if vocab != recon_vocab or tuple(gaze_cfg.scales) != tuple(recon_cfg.scales):
    raise ValueError(
      f"grpo: the gaze model's vocabulary (scales {tuple(gaze_cfg.scales)}, V={vocab}) differs "
      f"from the reconstructor's (scales {tuple(recon_cfg.scales)}, V={recon_vocab})"
    )
  return vocab


def train(cfg, workdir: str, progress: bool = True, source=None, held_out=None) -> dict:
  """Runs GRPO; returns (and writes) the report.

  source: a data source (`pipeline.make_source` protocol: len, key(i), load(i, rng)); default
  `pipeline.make_source(cfg.data, "train", cfg.seed)`. held_out: uint8 (N, T, S, S, 3)
  evaluation clips; default `pipeline.eval_clips(cfg.data, cfg.eval.num_clips, cfg.seed)`.
  """
  data = pipeline.for_training(cfg)
  mesh = loop.begin(cfg, workdir)
  if cfg.batch_size % mesh.size:
    raise ValueError(f"grpo: batch_size={cfg.batch_size} clips must be a multiple of the {mesh.size} devices")
  gaze_cfg, graphdef, state, shardings = initial_state(cfg, mesh)
  # the step is built for what is actually trained: the start's gaze config, the oracle's stage-0 model
  cfg = cfg.copy_and_resolve_references()
  cfg.gaze, cfg.oracle = gaze_cfg, oracle.resolve(cfg.oracle)
  vocab = _check_pair(gaze_cfg, cfg.oracle.model)
  frozen_oracle = oracle.load(cfg.oracle, mesh, seed=cfg.seed + 1)
  step, batch_sh = grpo_step.make_step(graphdef, shardings, mesh, cfg)
  if source is None:
    source = pipeline.make_source(data, "train", cfg.seed)
  batches = iter(pipeline.make_dataset(data, source, batch_size=cfg.batch_size, seed=cfg.seed))
  e = cfg.eval
  if held_out is None:
    held_out = pipeline.eval_clips(data, e.num_clips, cfg.seed)
  by_budget = evals.ratio_evaluator(graphdef, frozen_oracle.recon, mesh, held_out, eps=e.eps, ratios=e.ratios,
                                    frames=e.frames, picture_dir=os.path.join(workdir, "pictures"))
  cap = int(vocab_lib.budgets_from_ratio(e.cap_ratio, 1, vocab)[0])
  by_stop = evals.stop_rule_evaluator(graphdef, frozen_oracle.recon, mesh, held_out, eps=e.eps, cap=cap, frames=e.frames)
  evaluate = lambda st, i: {**by_budget(st, i), **by_stop(st, i)}
  stage = loop.Stage(
    step_fn=step,
    host_batch=lambda i: {"video": next(batches)["video"]},  # the iterator's position is checkpointed
    put_batch=lambda x: {k: jax.make_array_from_process_local_data(batch_sh[k], v) for k, v in x.items()},
    evaluate=evaluate, clips_per_step=cfg.batch_size, data_iterator=batches,
    frozen=oracle.replicated_state(frozen_oracle, mesh),
    tokens_per_step=cfg.batch_size * cfg.clip_len * vocab,
  )
  t0 = time.perf_counter()
  with mesh_lib.use(mesh):
    state = loop.run(stage, state, workdir=workdir, steps=cfg.steps, seed=cfg.seed, log_every=cfg.log_every,
                     eval_every=e.every, checkpoint_every=cfg.checkpoint_every, progress=progress,
                     profile=cfg.get("profile_steps", ""))
  wall = time.perf_counter() - t0
  loop.export_model(workdir, "gaze_final", nnx.merge(graphdef, state).model, gaze_cfg)
  return _report(workdir, cfg, wall)


def _report(workdir: str, cfg, wall: float) -> dict:
  rows = metric_log.read(os.path.join(workdir, "metrics.jsonl"))
  train_rows = [r for r in rows if "reward_mean" in r]
  eval_rows = [r for r in rows if "eval_ratio_at_eps" in r]
  if distributed.is_main():
    pictures.curves(os.path.join(workdir, "curve.png"), rows,
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
    "eval_first": {k: v for k, v in eval_rows[0].items() if k.startswith("eval_")} if eval_rows else None,
    "eval_final": {k: v for k, v in eval_rows[-1].items() if k.startswith("eval_")} if eval_rows else None,
    "gaze_checkpoint": os.path.join(workdir, "gaze_final"),
  }
  return loop.finish(workdir, report)
