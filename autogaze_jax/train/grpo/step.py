"""The jitted, donated, sharded GRPO train step (docs/design.md, GRPO).

  step, batch_shardings = make_step(graphdef, shardings, mesh, cfg)
  state, metrics = step(state, {"video": uint8 (B, T, S, S, 3)}, key, frozen)  # frozen: the oracle

The gaze model is trained; the oracle (reconstructor + perceptual teachers) is frozen and
enters as a replicated argument (not a baked-in constant). One step: temperature from the optimizer's step counter,
rollouts, rewards, advantages, then the policy loss scored by a teacher-forced pass at
temperature 1 and one optimizer update. If any watched quantity is NaN or inf, the update
is skipped (the state passes through unchanged) and the metrics `nonfinite_<name>` flag
which (the training loop's non-finite check, on log steps, names them).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import scoring
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import optim, oracle
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.grpo import advantages
from autogaze_jax.train.grpo import rollout as rollout_lib

WATCHED = ("reward", "advantage", "log_prob", "task_loss_prediction", "grpo_loss",
           "task_loss_prediction_loss", "grad_norm")


@dataclasses.dataclass(frozen=True)
class StepSpec:
  rollout: rollout_lib.RolloutSpec
  gamma: float
  temp_start: float
  temp_end: float
  total_steps: int


def _advantages(rew, ids, lens, vocab: int, gamma: float):
  """Flattened real-slot mask (N, T*S) and per-slot advantages of each reward (N, R, T*S)."""
  b, g, t, s = ids.shape
  real = rollout_lib.real_slots(ids, lens, vocab).reshape(b * g, t * s)
  a = advantages.group_centered(rew["reward"]).reshape(b * g, -1)
  traj = advantages.repeat_groups((rew["frames"] + 1) * s, g)  # slot index just after frame f_r
  return real, advantages.discounted_advantages_each_reward(a, real, traj, gamma)


def _policy_gradient(model, video, g: int, c: int, per_row):
  """Loss parts and gradients of the policy loss over the B * G rollouts, scored c rollouts of
  every clip at a time (a scan over G / c chunks summing gradients; equal to one pass).

  Each clip is encoded once: every chunk scores its rollouts on the same vision tokens, the
  chunks' gradients with respect to those tokens are summed, and the sum is pulled back
  through the encoder once (the group's G copies of a clip would otherwise each run the
  encoder and its backward pass).

  per_row: (ids, lens, advantages, real, targets, target mask), rows b * G + g.
  Returns (loss, grpo part, tlp part, grads, logp (N, T*S), pred (N, T*S))."""
  b, parts = video.shape[0], g // c
  n = b * g
  ids, lens, adv, real, target, tmask = per_row
  denom = jnp.sum(tmask * real) / n + 1e-6  # the whole batch's, as one pass would use
  model_graph, params, rest = nnx.split(model, nnx.Param, ...)
  tokens, encoder_vjp = jax.vjp(lambda p: nnx.merge(model_graph, p, rest).encode(video)[0], params)

  def loss_fn(p, clip_tokens, chunk):
    ids_c, lens_c, adv_c, real_c, target_c, tmask_c = chunk
    rows = advantages.repeat_groups(clip_tokens, c)  # every chunk scores the same clips
    logp, pred = scoring.score_tokens(nnx.merge(model_graph, p, rest), rows, ids_c, lens_c)
    logp, pred = logp.reshape(b * c, -1), pred.reshape(b * c, -1)
    loss, pg, tl = advantages.policy_loss(logp, pred, adv_c, real_c, target_c, tmask_c, denom=denom, rows=n)
    return loss, (pg, tl, logp, pred)

  grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)

  def with_encoder(grads_params, grads_tokens):
    return jax.tree.map(jnp.add, grads_params, encoder_vjp(grads_tokens)[0])

  if parts == 1:  # one pass: no loop around it
    (loss, (pg, tl, logp, pred)), (g_params, g_tokens) = grad_fn(params, tokens, per_row)
    return loss, pg, tl, with_encoder(g_params, g_tokens), logp, pred

  def split(x):  # (N, ...) -> (G / c, B * c, ...): chunk j holds rollouts j*c .. j*c+c-1 of every clip
    x = x.reshape((b, parts, c) + x.shape[1:])
    return jnp.moveaxis(x, 1, 0).reshape((parts, b * c) + x.shape[3:])

  def unsplit(x):
    x = x.reshape((parts, b, c) + x.shape[2:])
    return jnp.moveaxis(x, 0, 1).reshape((n,) + x.shape[3:])

  def accumulate(acc, chunk):
    (loss, (pg, tl, logp, pred)), grads = grad_fn(params, tokens, chunk)
    return jax.tree.map(jnp.add, acc, (loss, pg, tl, grads)), (logp, pred)

  zero = jnp.zeros((), jnp.float32)
  start = (zero, zero, zero, jax.tree.map(jnp.zeros_like, (params, tokens)))
  (loss, pg, tl, (g_params, g_tokens)), (logp, pred) = jax.lax.scan(accumulate, start,
                                                                     tuple(split(x) for x in per_row))
  return loss, pg, tl, with_encoder(g_params, g_tokens), unsplit(logp), unsplit(pred)


def policy_update(model, video, task_video, ids_bgts, lens_bgt, frames_br, recon, terms, spec: StepSpec):
  """Everything of a GRPO step after sampling: rewards of the given rollouts on the frames
  `frames_br` (B, R), group-centred discounted advantages, the policy loss and its gradients.

  video feeds the gaze model, task_video the reconstructor (the same clips in different
  normalisations officially; one array in our stages). Rollouts are (B, G, T, S) ids and
  (B, G, T) generated slots, group member g of clip b at [b, g]. Returns (grads, out) with out
  holding the rewards dict, real-slot mask, advantages, losses, log-probs and predictions
  (rows b * G + g, slots flattened t * S + s).
  """
  rew = rollout_lib.rewards(recon, task_video, ids_bgts, lens_bgt, frames_br, spec.rollout, perceptual=terms)
  vocab = model.gaze_decoder.vocab - 1
  b, g, t, s = ids_bgts.shape
  n = b * g
  ids, lens = ids_bgts.reshape(n, t, s), lens_bgt.reshape(n, t)
  real, adv_each = _advantages(rew, ids_bgts, lens_bgt, vocab, spec.gamma)
  adv = adv_each.sum(1)
  target, tmask = rew["targets"].reshape(n, -1), rew["target_mask"].reshape(n, -1)
  loss, pg, tl, grads, logp, pred = _policy_gradient(model, video, g, spec.rollout.chunk,
                                                     (ids, lens, adv, real, target, tmask))
  pg_n, tl_n = advantages.rollout_losses(logp, pred, adv, real, target, tmask)  # values only, for the record
  out = {"rewards": rew, "real": real, "advantages": adv, "advantages_each_reward": adv_each,
         "loss": loss, "grpo_loss": pg,
         "task_loss_prediction_loss": tl, "log_probs": logp, "task_loss_prediction": pred,
         "grpo_loss_each_rollout": pg_n, "task_loss_prediction_loss_each_rollout": tl_n}
  return grads, out


def train_step(graphdef, oracle_def, state, batch, key, frozen, *, spec: StepSpec):
  """One GRPO step: rollouts, rewards from the oracle (`frozen`), advantages, update."""
  old = jax.tree.map(lambda x: x, state)
  ts = nnx.merge(graphdef, state)
  frozen_oracle = nnx.merge(oracle_def, frozen)
  recon, terms = frozen_oracle.recon, frozen_oracle.terms()
  video = image_lib.normalize_on_device(batch["video"])
  tau = advantages.temperature(ts.opt.step[...], spec.temp_start, spec.temp_end, spec.total_steps)
  k_roll, k_frames, k_random = jax.random.split(key, 3)
  roll = rollout_lib.rollout(ts.model, video, k_roll, tau, spec.rollout)
  frames = rollout_lib.reward_frames(k_frames, video.shape[0], video.shape[1], spec.rollout.recon_sample_rate,
                                      spec.rollout.shared_draws)
  grads, up = policy_update(ts.model, video, video, roll["ids"], roll["lens"], frames, recon, terms, spec)
  rew, real, adv = up["rewards"], up["real"], up["advantages"]
  vocab = ts.model.gaze_decoder.vocab - 1
  rand_ids, rand_lens = rollout_lib.random_rollouts(k_random, roll["budgets"], vocab, roll["ids"].shape[-1])
  rand = rollout_lib.rewards(recon, video, rand_ids, rand_lens, frames,
                              dataclasses.replace(spec.rollout, group_size=1), perceptual=terms)
  ts.opt.update(ts.model, grads)
  grad_norm = optax.global_norm(grads)
  logp, pred = up["log_probs"], up["task_loss_prediction"]
  pg, tl = up["grpo_loss"], up["task_loss_prediction_loss"]
  watched = [rew["reward"], adv, jnp.where(real, logp, 0.0), jnp.where(real, pred, 0.0), pg, tl, grad_norm]
  bad = {name: ~jnp.all(jnp.isfinite(x)) for name, x in zip(WATCHED, watched)}
  ok = ~jnp.any(jnp.stack(list(bad.values())))
  new_state = jax.tree.map(lambda new, prev: jnp.where(ok, new, prev), nnx.state(ts), old)
  real_f = real.astype(jnp.float32)
  adv_real = jnp.where(real, adv, 0.0)
  metrics = {
    "loss": up["loss"], "grpo_loss": pg, "task_loss_prediction_loss": tl, "grad_norm": grad_norm,
    "reward_mean": rew["reward"].mean(), "reward_std": rew["reward"].std(),
    "reward_group_std": rew["reward"].std(axis=1).mean(),
    "reward_vs_random": rew["reward"].mean() - rand["reward"].mean(),
    "adv_abs_mean": jnp.abs(adv_real).sum() / jnp.maximum(real_f.sum(), 1.0),
    "adv_min": jnp.where(real, adv, jnp.inf).min(), "adv_max": jnp.where(real, adv, -jnp.inf).max(),
    "recon_loss": rew["loss"].mean(), "gaze_ratio": rew["gaze_ratio"].mean(),
    "pilot_ratio": roll["budgets"].mean() / vocab, "eps_mean": roll["eps"].mean(), "temperature": tau,
    "skipped": 1.0 - ok.astype(jnp.float32),
  }
  metrics.update({f"nonfinite_{name}": flag.astype(jnp.float32) for name, flag in bad.items()})
  return new_state, metrics


def step_spec(cfg) -> StepSpec:
  """The static step settings of a GRPO config (its gaze model and `grpo` block)."""
  g, gaze = cfg.grpo, cfg.gaze
  rollout = rollout_lib.make_spec(
    gaze.num_vision_tokens_each_frame, gaze.decoder.num_multi_token_pred, group_size=g.group_size,
    pilot_ratio=g.pilot_ratio, eps_range=g.eps_range, recon_sample_rate=g.recon_sample_rate, top_k=g.top_k,
    segments=g.decode_segments, fixed_budget=g.get("fixed_budget", False), group_chunk=g.get("group_chunk", 0),
    shared_draws=g.get("shared_draws", False),
  )
  return StepSpec(rollout, g.gamma, g.temp_start, g.temp_end, cfg.steps)


def make_step(graphdef, shardings, mesh, cfg):
  """(jitted step, batch shardings): (state, batch, key, frozen) -> (state, metrics), frozen
  the oracle's state (`oracle.abstract(cfg.oracle)` fixes its structure); the state is
  donated, the clips split over the mesh, key and oracle replicated."""
  oracle_def, _ = oracle.abstract(cfg.oracle, mesh)
  batch_sh = {"video": mesh_lib.batch_sharding(mesh, 5)}
  repl = mesh_lib.replicated(mesh)
  step = jax.jit(functools.partial(train_step, graphdef, oracle_def, spec=step_spec(cfg)),
                 in_shardings=(shardings, batch_sh, repl, repl), out_shardings=(shardings, repl),
                 donate_argnums=0)
  return step, batch_sh


def abstract_inputs(cfg, mesh):
  """(graphdef, shardings, (state, batch, key, frozen) as jax.ShapeDtypeStruct)."""
  tx = optim.make(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.abstract_train_state(lambda: GazeModel(cfg.gaze, nnx.Rngs(0)), tx, mesh)
  _, frozen = oracle.abstract(cfg.oracle, mesh)
  return graphdef, shardings, (state, {"video": state_lib.video_struct(cfg, mesh)}, state_lib.key_struct(mesh),
                               frozen)
