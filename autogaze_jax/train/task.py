"""The reconstruction task (docs/design.md, "Reconstruction task"): one call from a video and its gazes to
per-frame losses, rewards, task-loss targets and metrics, shared by NTP labelling, GRPO and
the reconstructor's own training.

Gazes are fixed-shape local ids (B, T, G), PAD = V, with `lens` (B, T) slots per frame (the
official `num_gazing_each_frame` is the batch max). The loss is per-frame L1 in the doubly
normalised pixel space, plus optional perceptual terms w * mean((F(pred) - F(target))^2)
for feature extractors F given by the caller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autogaze_jax import image as image_lib
from autogaze_jax.models import recon_config


def sample_frames(key, num_frames: int, rate: float):
  """R = int(T * rate) distinct frames in random order (randperm(T)[:R]), shared by the batch."""
  r = max(1, int(num_frames * rate))
  return jax.random.permutation(key, num_frames)[:r]


def random_ids(key, counts_bt, vocab: int, slots: int):
  """Local ids (B, T, slots): counts[b, t] distinct uniformly random tokens per frame, PAD
  (= vocab) in the remaining slots."""
  b, t = counts_bt.shape
  perm = jnp.argsort(jax.random.uniform(key, (b, t, vocab)), axis=-1)[..., :slots]
  return jnp.where(jnp.arange(slots) < counts_bt[..., None], perm, vocab).astype(jnp.int32)


def task_loss_targets(ids_btg, frame_idx_r, loss_br, vocab: int):
  """Per-slot regression targets and mask (official semantics, docs/design.md, "Reconstruction task").

  For a reconstructed frame, mask[j] = pad[j + 1] (the last slot gets 1): the last real gaze
  before each PAD run, in particular the frame's last real gaze, regresses to the frame loss.
  """
  b, t, _ = ids_btg.shape
  pad = ids_btg == vocab
  nxt = jnp.concatenate([pad[..., 1:], jnp.ones((b, t, 1), bool)], -1)
  chosen = jnp.zeros((t,), bool).at[frame_idx_r].set(True)
  mask = nxt & chosen[None, :, None]
  frame_loss = jnp.zeros((b, t), loss_br.dtype).at[:, frame_idx_r].set(loss_br)
  return jnp.where(mask, frame_loss[..., None], 0.0), mask.astype(jnp.float32)


def frame_loss(pred_br3hw, target_br3hw, perceptual=()):
  """The official frame loss of reconstructions against targets (both in the task space):
  L1 + sum_k w_k * mean((F_k(pred) - F_k(target))^2) over each teacher's features.
  Returns (loss (B, R), l1 (B, R), the unweighted terms (B, R, K))."""
  b, r = pred_br3hw.shape[:2]
  l1 = jnp.mean(jnp.abs(pred_br3hw.astype(jnp.float32) - target_br3hw), axis=(2, 3, 4))
  loss, terms = l1, []
  for weight, fn in perceptual:
    fp = fn(pred_br3hw.reshape(b * r, *pred_br3hw.shape[2:]))
    ft = fn(target_br3hw.reshape(b * r, *target_br3hw.shape[2:]))
    terms.append(jnp.mean(jnp.square(fp - ft), axis=tuple(range(1, fp.ndim))).reshape(b, r))
    loss = loss + weight * terms[-1]
  return loss, l1, jnp.stack(terms, -1) if terms else jnp.zeros(l1.shape + (0,), l1.dtype)


def evaluate(model, video_bt3hw, ids_btg, lens_bt, frame_idx_r, perceptual=(), tokens=None):
  """Reconstructs the frames `frame_idx_r` from the gazes and scores them.

  perceptual: iterable of (weight, fn) with fn(pixels (N, 3, H, W) in task space) -> features.
  tokens: the reconstructor's `embed_all(video)`, when the caller computed it once for many gaze sets.
  Returns a dict of arrays (see docs/design.md, "Reconstruction task").
  """
  cfg = model.cfg
  vocab = sum(recon_config.tokens_per_scale(cfg))
  b, t, _ = ids_btg.shape
  pred = model(video_bt3hw, ids_btg, frame_idx_r, tokens=tokens)  # (B, R, 3, S, S)
  size = pred.shape[-1]
  target = video_bt3hw[:, frame_idx_r]
  if target.shape[-1] != size:
    target = image_lib.resize_bicubic(target, (size, size))
  loss, l1, terms = frame_loss(pred, target, perceptual)
  targets, mask = task_loss_targets(ids_btg, frame_idx_r, jax.lax.stop_gradient(loss), vocab)
  real = ids_btg != vocab
  n_t = lens_bt.max(axis=0)
  return {
    "loss_each_frame": loss,
    "l1_each_frame": l1,
    "perceptual_each_frame": terms,
    "loss": loss.mean(-1),
    "reward": -jax.lax.stop_gradient(loss),
    "traj_len_each_reward": jnp.cumsum(n_t)[frame_idx_r],
    "task_losses": targets,
    "task_losses_mask": mask,
    "reconstruction": pred,
    "frame_idx": frame_idx_r,
    "num_non_padded_gazing_at_each_reconstruction_frame": real.sum(-1)[:, frame_idx_r],
    "metrics": {
      "reconstruction_loss": loss.mean(),
      "avg_gazing_ratio_per_frame": real.sum() / (b * t * vocab),
    },
  }


def random_gazes(key, batch: int, frames: int, vocab: int, slots: int, rmin: float, rmax: float):
  """ids (B, T, slots) of distinct random tokens, PAD = vocab beyond each frame's count."""
  k1, k2 = jax.random.split(key)
  ratio = jax.random.uniform(k2, (batch, frames), minval=rmin, maxval=rmax)
  count = jnp.clip((ratio * vocab).astype(jnp.int32), 1, slots)
  return random_ids(k1, count, vocab, slots), jnp.full((batch, frames), slots, jnp.int32)
