"""Held-out evaluation of a gaze policy against the frozen reconstructor: two evaluators,
each `(state, step) -> {name: scalar}`.

`ratio_evaluator`: the fraction of patches a policy needs to reach a loss ε.

For each budget n of a static grid (ascending), the policy gazes greedily exactly n tokens
per frame (no task-loss stopping), and the frozen reconstructor measures the loss of the
chosen frames. A clip's ratio is where its mean loss first reaches ε, interpolated linearly
between the budgets around the crossing (1.0 if no budget reaches).
This measures where the policy looks, independently of how well its task-loss head is
calibrated (decoding with the head's stop rule would mix both). Random gazes at the same
budgets give the baseline.

`stop_rule_evaluator`, the held-out RL validation (docs/design.md, "Evaluation"): greedy decoding with the per-frame cap and the
task-loss stop rule at ε, as the official validation runs it.

Reports the fraction of patches gazed (the paper's "gaze ratio at loss ε", official ε = 0.7,
cap int(0.75 V)) and the reconstruction loss those gazes actually reach on `frames`. Unlike
`ratio_evaluator` (budget-only decoding, where the policy looks), this also depends on how well
the task-loss head predicts the loss, which GRPO trains too.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import distributed, pictures
from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.models import decoding, recon_config
from autogaze_jax.train import clip_stats, task


def budget_grid(ratios, vocab: int) -> tuple[int, ...]:
  """The ascending distinct per-frame budgets int(r * V) (at least 1) of a ratio grid."""
  return tuple(sorted({int(vocab_lib.budgets_from_ratio(r, 1, vocab)[0]) for r in ratios}))


SLOT_SPREAD = 4  # a budget shares its group's program while its slots are >= 1/4 of the group's


def budget_groups(budgets, k: int = 1) -> list[tuple[int, ...]]:
  """The ascending budgets in runs that decode and score in one program, sized for the run's
  largest: a run grows while the largest budget's slots stay within SLOT_SPREAD x the smallest's.
  One program per budget costs ~5 s of compiling each for the tiny models, and one for the whole
  grid would pad the official grid's 13-gaze budget to 270 slots (decode cache and reconstructor
  sequence), so runs bound the padding at 4x (tiny grid: 1-4 and 5-20 gazes, two programs)."""
  if list(budgets) != sorted(set(budgets)):
    raise ValueError(f"evals: budgets must ascend without repeats, got {tuple(budgets)}")
  groups = []
  for n in budgets:
    if groups and vocab_lib.slots_per_frame(n, k) <= SLOT_SPREAD * vocab_lib.slots_per_frame(groups[-1][0], k):
      groups[-1].append(n)
    else:
      groups.append([n])
  return [tuple(g) for g in groups]


def policy_losses(model, recon, video, frames, budgets, keep: int | None = None):
  """(B, n budgets) reconstruction losses of greedy budget-only gazes (budgets ascending), and
  the first clip's local ids (T, slots) at budget `keep` (None if not asked; PAD past the
  budget; `keep` must be one of the budgets).

  The budget is a traced input of decoding (the steps past it feed nothing), so the budgets of
  a `budget_groups` run share one program (`lax.map`) with that run's largest slots. The vision
  tokens are encoded once for all budgets."""
  if keep is not None and keep not in budgets:
    raise ValueError(f"policy_losses: keep={keep} is not one of the budgets {tuple(budgets)}")
  groups = budget_groups(budgets, model.gaze_decoder.k)
  b, t = video.shape[:2]
  tokens = model.encode(video)[0]
  losses, kept = [], None
  for group in groups:
    spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(group[-1], model.gaze_decoder.k))

    def one(n, spec=spec):
      ids, lens = decoding.generate_tokens(model, tokens, jnp.full((t,), n, jnp.int32), jnp.zeros((b, t)), None,
                                           1.0, spec)
      return task.evaluate(recon, video, ids, lens, frames)["loss_each_frame"].mean(-1), ids[0]

    loss, first_ids = jax.lax.map(one, jnp.asarray(group, jnp.int32))
    losses.append(loss)
    if keep in group:
      kept = first_ids[group.index(keep)]
  return jnp.concatenate(losses).T, kept


def random_losses(recon, video, frames, budgets, vocab: int, key):
  """(B, n budgets) losses of n distinct uniformly random tokens per frame, one program per
  `budget_groups` run as `policy_losses` (a clip's draw at budget n is the same in any run)."""
  b, t = video.shape[:2]
  out = []
  for group in budget_groups(budgets):

    def one(n, slots=group[-1]):
      r = (n + 0.5) / vocab  # exactly n random tokens per frame
      ids, lens = task.random_gazes(jax.random.fold_in(key, n), b, t, vocab, slots, r, r)
      return task.evaluate(recon, video, ids, lens, frames)["loss_each_frame"].mean(-1)

    out.append(jax.lax.map(one, jnp.asarray(group, jnp.int32)))
  return jnp.concatenate(out).T


def ratio_evaluator(graphdef, recon, mesh, clips_u8, *, eps: float, ratios, frames, prefix: str = "eval_",
                   picture_dir: str | None = None, picture_ratio: float = 0.2):
  """(state, step) -> dict of floats for a TrainState whose `model` is the gaze model. With
  `picture_dir`, every call also draws the first clip's gazes at the grid budget nearest
  `picture_ratio` into picture_dir/gazes_step<N>.png (process 0 only)."""
  vocab = int(sum(recon_config.tokens_per_scale(recon.cfg)))
  budgets = budget_grid(ratios, vocab)
  grid = [n / vocab for n in budgets]
  shown = min(budgets, key=lambda n: abs(n / vocab - picture_ratio))
  frames = jnp.asarray([f for f in frames if f < clips_u8.shape[1]], jnp.int32)
  recon_def, recon_state = nnx.split(recon)
  repl = mesh_lib.replicated(mesh)
  recon_state = jax.device_put(recon_state, repl)
  held = jax.device_put(np.asarray(clips_u8), repl)

  @functools.partial(jax.jit, out_shardings=repl)
  def run(state, recon_state, clips):
    video = image_lib.normalize_on_device(clips)
    loss, ids = policy_losses(nnx.merge(graphdef, state).model, nnx.merge(recon_def, recon_state), video, frames,
                              budgets, keep=shown)
    return loss, ids

  @functools.partial(jax.jit, out_shardings=repl)
  def baseline(recon_state, clips):
    video = image_lib.normalize_on_device(clips)
    loss = random_losses(nnx.merge(recon_def, recon_state), video, frames, budgets, vocab, jax.random.key(0))
    return loss

  with mesh_lib.use(mesh):
    random_ratio = float(clip_stats.ratio_at_eps(jax.device_get(baseline(recon_state, held)), grid, eps).mean())

  def evaluate(state, step):
    with mesh_lib.use(mesh):
      loss, ids = jax.device_get(run(state, recon_state, held))
    ratio, loss = clip_stats.ratio_at_eps(loss, grid, eps).mean(), loss.mean(0)
    if picture_dir and distributed.is_main():
      masks = [m[0] for m in vocab_lib.gazing_masks(np.asarray(ids)[None], recon.cfg.scales, vocab)]
      pictures.save_picture(os.path.join(picture_dir, f"gazes_step{step:06d}.png"),
                             pictures.gaze_picture(np.asarray(clips_u8[0]), masks, size=96))
    out = {prefix + "ratio_at_eps": float(ratio), prefix + "random_ratio_at_eps": random_ratio}
    out.update({f"{prefix}loss_at_{n / vocab:.3g}": float(x) for n, x in zip(budgets, loss)})
    return out

  return evaluate


def stop_rule_metrics(model, recon, video, frames, *, eps: float, cap: int) -> dict:
  """model: GazeModel; recon: Reconstructor; video (B, T, 3, H, W) preprocessed; frames (R,)."""
  b, t = video.shape[:2]
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(cap, model.gaze_decoder.k), use_task_loss=True)
  ids, lens = decoding.generate(model, video, jnp.full((t,), cap, jnp.int32), jnp.full((b, t), eps, jnp.float32),
                                None, 1.0, spec)
  out = task.evaluate(recon, video, ids, lens, jnp.asarray(frames, jnp.int32))
  return {"gaze_ratio_eps_stop": out["metrics"]["avg_gazing_ratio_per_frame"],
          "loss_eps_stop": out["loss_each_frame"].mean()}


def stop_rule_evaluator(graphdef, recon, mesh, clips_u8, *, eps: float, cap: int, frames, prefix: str = "eval_"):
  """(state, step) -> dict of floats for a TrainState whose `model` is the gaze model;
  clips_u8 (N, T, H, W, 3) are put on the devices once."""
  recon_def, recon_state = nnx.split(recon)
  repl = mesh_lib.replicated(mesh)
  args = jax.device_put((recon_state, np.asarray(clips_u8)), repl)
  frames = tuple(int(f) for f in frames if f < clips_u8.shape[1])

  @functools.partial(jax.jit, out_shardings=repl)
  def run(state, recon_state, clips):
    recon_model = nnx.merge(recon_def, recon_state)
    video = image_lib.normalize_on_device(clips)
    return stop_rule_metrics(nnx.merge(graphdef, state).model, recon_model, video, frames, eps=eps, cap=cap)

  def evaluate(state, step):
    del step
    with mesh_lib.use(mesh):
      return {prefix + k: float(v) for k, v in jax.device_get(run(state, *args)).items()}

  return evaluate
