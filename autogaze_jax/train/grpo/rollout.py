"""GRPO rollouts and their rewards (docs/design.md, GRPO), all under stop-gradient.

Per clip (the official RL setup runs one clip per GPU and micro-batch; here a step's B clips
are independent, except that `shared_draws` gives them the official single ε and frame draw):
1. ε ~ U[eps_min, eps_max] for the clip (or one ε for the step with `shared_draws`, as officially);
2. a pilot rollout samples at temperature τ with the per-frame cap int(pilot_ratio * V)
   and the task-loss stop rule at ε; its real gazes per frame c_t are the group's budgets;
3. G rollouts sample at τ with budgets c_t and no stop rule, so every member of a group
   gazes exactly c_t times in frame t and rewards compare placements at equal cost;
4. the frozen reconstructor scores R = int(T * recon_sample_rate) random frames of the clip
   (the same frames for its G members): rewards -loss, task-loss targets.
Steps 3-4 run per clip under `jax.vmap` (a clip's own budgets and frames); the clip axis is
the sharded one, the group stays on the clip's device.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from flax.core import spmd as flax_spmd

from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.models import decoding
from autogaze_jax.train import task


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
  """Static rollout settings (part of the compile key)."""

  group_size: int
  pilot_cap: int  # per-frame budget of the pilot rollout
  slots: int  # decode slots per frame, whole steps of K covering pilot_cap
  eps_min: float
  eps_max: float
  recon_sample_rate: float
  top_k: int = 50
  segments: int = 1
  fixed_budget: bool = False  # every frame gets pilot_cap, no pilot rollout
  # Rollouts of a group per reconstructor pass and per policy-gradient pass (0 = the whole
  # group at once): the passes run one after another, so peak memory follows the chunk, not G.
  group_chunk: int = 0
  # One ε and one set of rewarded frames for the whole step (official) instead of a draw per clip.
  shared_draws: bool = False

  @property
  def chunk(self) -> int:
    return min(self.group_chunk or self.group_size, self.group_size)


def make_spec(vocab: int, k: int, *, group_size: int, pilot_ratio: float, eps_range,
              recon_sample_rate: float, top_k: int = 50, segments: int = 1,
              fixed_budget: bool = False, group_chunk: int = 0, shared_draws: bool = False) -> RolloutSpec:
  if group_size < 2:
    raise ValueError(f"grpo.group_size: need at least 2 rollouts per clip for a baseline, got {group_size}")
  if group_chunk < 0 or (group_chunk and group_size % group_chunk):
    raise ValueError(f"grpo.group_chunk: {group_chunk} must be 0 (whole group) or divide group_size={group_size}")
  lo, hi = (float(e) for e in eps_range)
  if not lo <= hi:
    raise ValueError(f"grpo.eps_range: need min <= max, got ({lo}, {hi})")
  cap = int(vocab_lib.budgets_from_ratio(pilot_ratio, 1, vocab)[0])
  return RolloutSpec(group_size, cap, vocab_lib.slots_per_frame(cap, k), lo, hi,
                     float(recon_sample_rate), top_k, segments, bool(fixed_budget), int(group_chunk),
                     bool(shared_draws))


def per_clip(fn, *args):
  """vmap over clips (axis 0 of every arg). The clip axis takes the mesh axes of "batch";
  inside, each clip's rows (its group) are left unsharded."""
  rules = tuple(flax_spmd.get_logical_axis_rules() or mesh_lib.DEFAULT_RULES)
  batch_axes = dict(rules).get("batch")
  inner = tuple((name, None if name == "batch" else axes) for name, axes in rules)
  with nnx.logical_axis_rules(inner):
    return jax.vmap(fn, spmd_axis_name=batch_axes)(*args)


def real_slots(ids, lens, vocab: int):
  """Generated and not PAD: (..., T, S) bool."""
  return (jnp.arange(ids.shape[-1]) < lens[..., None]) & (ids != vocab)


def _decode_spec(spec: RolloutSpec, use_task_loss: bool) -> decoding.DecodeSpec:
  return decoding.DecodeSpec(slots=spec.slots, sample=True, top_k=spec.top_k,
                             use_task_loss=use_task_loss, segments=spec.segments)


def pilot_counts(model, tokens, eps_b, keys_b, tau, spec: RolloutSpec):
  """Real gazes per frame (B, T) of one sampled, ε-stopped rollout per clip (≥ 1 each), from
  the clips' vision tokens (B, T, P, D)."""
  b, t = tokens.shape[:2]
  caps = jnp.full((t,), spec.pilot_cap, jnp.int32)
  eps = jnp.broadcast_to(eps_b[:, None], (b, t))
  ids, lens = decoding.generate_tokens(model, tokens, caps, eps, keys_b, tau, _decode_spec(spec, True))
  return real_slots(ids, lens, model.gaze_decoder.vocab - 1).sum(-1).astype(jnp.int32)


def group_rollouts(model, tokens, budgets_bt, keys_bg, tau, spec: RolloutSpec):
  """G sampled rollouts per clip at the clip's budgets, no stop rule, all decoded from the
  clip's one encoding (vision tokens (B, T, P, D)): ids (B, G, T, S), generated slots (B, G, T)."""
  g, dspec = spec.group_size, _decode_spec(spec, False)

  def one(clip_tokens, budgets, keys):
    rows = jnp.broadcast_to(clip_tokens[None], (g,) + clip_tokens.shape)
    return decoding.generate_tokens(model, rows, budgets, jnp.zeros((g, clip_tokens.shape[0])), keys, tau, dspec)

  return per_clip(one, tokens, budgets_bt, keys_bg)


def random_rollouts(key, budgets_bt, vocab: int, slots: int):
  """One uniformly random rollout per clip at the same budgets (distinct tokens per frame):
  ids (B, 1, T, slots) with PAD beyond each frame's budget, slots (B, 1, T). The step scores
  it on the group's frames, so `reward - random reward` compares placements on the same
  clips and frames, free of how hard the step's clips happen to be."""
  b, t = budgets_bt.shape
  ids = task.random_ids(key, budgets_bt, vocab, slots)
  return ids[:, None], jnp.full((b, 1, t), slots, jnp.int32)


def per_clip_keys(key, batch: int):
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))


def sample_keys(key, batch: int, group_size: int):
  """Independent keys for ε (one key), pilots (B,) and group members (B, G)."""
  k_eps, k_pilot, k_group = jax.random.split(key, 3)
  members = jax.vmap(lambda kk: per_clip_keys(kk, group_size))
  return k_eps, per_clip_keys(k_pilot, batch), members(per_clip_keys(k_group, batch))


def draw_eps(key, batch: int, spec: RolloutSpec):
  """The pilots' stop thresholds (B,): ε ~ U[eps_min, eps_max] per clip, or one for the step."""
  eps = jax.random.uniform(key, () if spec.shared_draws else (batch,), minval=spec.eps_min, maxval=spec.eps_max)
  return jnp.broadcast_to(eps, (batch,))


def rollout(model, video, key, tau, spec: RolloutSpec) -> dict:
  """Pilot + group rollouts of the clips `video` (B, T, 3, H, W), preprocessed."""
  b = video.shape[0]
  k_eps, k_pilot, k_group = sample_keys(key, b, spec.group_size)
  eps = draw_eps(k_eps, b, spec)
  tokens = model.encode(video)[0]  # once per clip: the pilot and every group member read it
  if spec.fixed_budget:
    budgets = jnp.full(video.shape[:2], spec.pilot_cap, jnp.int32)
  else:
    budgets = pilot_counts(model, tokens, eps, k_pilot, tau, spec)
  ids, lens = group_rollouts(model, tokens, budgets, k_group, tau, spec)
  out = {"ids": ids, "lens": lens, "eps": eps, "budgets": budgets}
  return jax.tree.map(jax.lax.stop_gradient, out)


def reward_frames(key, batch: int, num_frames: int, rate: float, shared: bool = False):
  """The frames each clip is rewarded on (B, R): R = max(1, int(T * rate)) distinct frames in random
  order, a draw per clip, or with `shared` one draw for the whole batch (the official
  `randperm(T)[:R]` once per step)."""
  if shared:
    frames = task.sample_frames(key, num_frames, rate)
    return jnp.broadcast_to(frames[None], (batch,) + frames.shape)
  return jax.vmap(lambda k: task.sample_frames(k, num_frames, rate))(per_clip_keys(key, batch))


def rewards(recon, video, ids_bgts, lens_bgt, frames_br, spec: RolloutSpec, perceptual=()):
  """Frozen-reconstructor scores of every rollout on each clip's frames `frames_br` (B, R),
  shared by its group.

  Returns reward / loss (B, G, R) (loss = l1 + sum_k w_k * term_k, with l1 (B, G, R) and the
  perceptual terms (B, G, R, K) also given), frames (B, R), task-loss targets and mask
  (B, G, T, S), gaze ratio (B,) = real gazes / (G * T * V).
  """
  g, c = spec.group_size, spec.chunk

  def one(clip, ids, lens, frames):
    clip_tokens = recon.embed_all(clip[None])  # once per clip, shared by its group

    def part(ids_lens):  # c rollouts of the group in one reconstructor pass
      rows = jnp.broadcast_to(clip[None], (c,) + clip.shape)
      tokens = jnp.broadcast_to(clip_tokens, (c,) + clip_tokens.shape[1:])
      out = task.evaluate(recon, rows, *ids_lens, frames, perceptual=perceptual, tokens=tokens)
      return {"reward": out["reward"], "loss": out["loss_each_frame"], "l1": out["l1_each_frame"],
              "perceptual": out["perceptual_each_frame"], "targets": out["task_losses"],
              "target_mask": out["task_losses_mask"], "gaze_ratio": out["metrics"]["avg_gazing_ratio_per_frame"]}

    if c == g:  # one pass: no loop around it
      parts = jax.tree.map(lambda x: x[None], part((ids, lens)))
    else:
      parts = jax.lax.map(part, (ids.reshape((g // c, c) + ids.shape[1:]), lens.reshape((g // c, c) + lens.shape[1:])))
    out = {k: v.reshape((g,) + v.shape[2:]) for k, v in parts.items() if k != "gaze_ratio"}
    return dict(out, frames=frames, gaze_ratio=parts["gaze_ratio"].mean())

  out = per_clip(one, video, ids_bgts, lens_bgt, frames_br)
  return jax.tree.map(jax.lax.stop_gradient, out)
