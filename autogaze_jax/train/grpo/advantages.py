"""GRPO arithmetic (docs/design.md, GRPO): groups, the sampling-temperature schedule, discounted
group-mean advantages with the official code semantics, and the REINFORCE policy loss.

Layout: a step's B clips are each repeated G times, clip-major (row = b * G + g; the
official tiling is g * B + b, which only permutes rows). Gazes are the fixed-shape slots of
`decoding` (B*G, T, S) flattened to (B*G, T*S); a slot is real iff it was generated and is
not PAD, and only real slots count in discount distances, so frames' unused slots change
nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def repeat_groups(x, group_size: int):
  """(B, ...) -> (B * G, ...), each clip repeated G times in a row (row = b * G + g)."""
  return jnp.repeat(x, group_size, axis=0)


def temperature(step, start: float, end: float, total_steps: int):
  """Exponential decay start * (end / start) ** (step / total_steps), the official schedule."""
  frac = jnp.asarray(step, jnp.float32) / jnp.float32(max(total_steps, 1))
  return jnp.float32(start) * (jnp.float32(end) / jnp.float32(start)) ** frac


def group_centered(reward_bgr):
  """A = r - mean over the group of the same clip, NO division by the std."""
  return reward_bgr - reward_bgr.mean(axis=1, keepdims=True)


def discounted_advantages(adv_nr, real_nl, traj_len_nr, gamma: float):
  """Per-slot advantages (N, L): the sum over rewards of `discounted_advantages_each_reward`."""
  return jnp.sum(discounted_advantages_each_reward(adv_nr, real_nl, traj_len_nr, gamma), axis=1)


def discounted_advantages_each_reward(adv_nr, real_nl, traj_len_nr, gamma: float):
  """Per-slot advantages of each reward (N, R, L) from per-reward advantages (N, R) (the
  official code's exact semantics).

  real (N, L) bool marks real slots; traj_len (N, R) is the slot index just after the
  rewarded frame. For j < L_r and real: adv_r[j] = A_r * gamma ** d, d = (real slots in
  [j, L_r)) - 1; slots at or after L_r, and padded slots, get nothing from reward r.
  """
  slot = jnp.arange(real_nl.shape[1])
  inside = real_nl[:, None, :] & (slot[None, None, :] < traj_len_nr[:, :, None])  # (N, R, L)
  upto = jnp.cumsum(inside, axis=-1)
  dist = upto[..., -1:] - upto + inside - 1  # real slots in [j, L_r) minus 1
  weight = jnp.where(inside, jnp.float32(gamma) ** jnp.maximum(dist, 0), 0.0)
  return adv_nr[:, :, None] * weight


def rollout_losses(logp_nl, pred_nl, adv_nl, real_nl, target_nl, target_mask_nl, denom=None):
  """Per-rollout loss parts (N,) each (docs/design.md, GRPO), no mean over rollouts:

  grpo(n) = -sum_j exp(logp - sg(logp)) * adv (value: -sum adv, gradient: -sum adv * dlogp),
  tlp(n) = sum_j tm * (pred - target)^2 / denom, tm = target_mask * real, denom = sum tm / N
  + 1e-6 (one normaliser for the whole batch; pass the whole batch's when given a chunk).
  Per-trajectory sums: no clipping, KL or length normalisation.
  """
  real = real_nl.astype(jnp.float32)
  ratio = jnp.exp(logp_nl - jax.lax.stop_gradient(logp_nl))
  grpo = -jnp.sum(ratio * adv_nl * real, axis=-1)
  tm = target_mask_nl * real
  if denom is None:
    denom = tm.sum() / tm.shape[0] + 1e-6
  tlp = jnp.sum(tm * jnp.square(pred_nl - target_nl), axis=-1) / denom
  return grpo, tlp


def policy_loss(logp_nl, pred_nl, adv_nl, real_nl, target_nl, target_mask_nl, denom=None, rows=None):
  """REINFORCE with the group baseline plus the task-loss head regression: the
  `rollout_losses` averaged over rollouts. Returns (mean(grpo + tlp), mean(grpo), mean(tlp)).
  For a chunk of the rollouts, pass the whole batch's `denom` and row count `rows`: the
  chunks' results then sum to the whole batch's.
  """
  grpo, tlp = rollout_losses(logp_nl, pred_nl, adv_nl, real_nl, target_nl, target_mask_nl, denom)
  rows = grpo.shape[0] if rows is None else rows
  return jnp.sum(grpo + tlp) / rows, jnp.sum(grpo) / rows, jnp.sum(tlp) / rows
