"""Held-out evaluation of a gaze policy against a frozen reconstructor (TRAINING.md §5.6, §2.4).

* At ε: greedy decoding with the per-frame cap and the task-loss stop at ε; reports the
  fraction of patches gazed (the paper's "gaze ratio at loss ε", official ε = 0.7, cap
  int(0.75 V)) and the reconstruction loss those gazes actually reach.
* At a fixed budget: greedy decoding of exactly `budget` gazes per frame, no stop rule; the
  reconstruction loss then measures where the policy looks, independently of how well its
  task-loss head is calibrated.
Losses are the mean over the clips and the frames `frames` (a static list).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import decoding, preprocessing, reconstruction_task
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib


def _greedy(model, video, budget: int, eps, use_task_loss: bool):
  b, t = video.shape[:2]
  k = model.gaze_decoder.k
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(budget, k), use_task_loss=use_task_loss)
  eps_bt = jnp.full((b, t), eps, jnp.float32)
  return decoding.generate(model, video, jnp.full((t,), budget, jnp.int32), eps_bt, None, 1.0, spec)


def policy_metrics(model, recon, video, frames, *, eps: float, cap: int, budget: int) -> dict:
  """model: GazeModel; recon: Reconstructor; video (B, T, 3, H, W) preprocessed; frames (R,)."""
  frames = jnp.asarray(frames, jnp.int32)
  ids, lens = _greedy(model, video, cap, eps, True)
  at_eps = reconstruction_task.evaluate(recon, video, ids, lens, frames)
  ids, lens = _greedy(model, video, budget, eps, False)
  at_budget = reconstruction_task.evaluate(recon, video, ids, lens, frames)
  return {
    "gaze_ratio_at_eps": at_eps["metrics"]["avg_gazing_ratio_per_frame"],
    "loss_at_eps": at_eps["loss_each_frame"].mean(),
    "loss_at_budget": at_budget["loss_each_frame"].mean(),
  }


def make_evaluator(graphdef, recon, mesh, clips_u8, *, eps: float, cap: int, budget: int,
                   frames, prefix: str = "eval_"):
  """(state, step) -> dict of floats for a TrainState whose `model` is the gaze model.

  clips_u8: held-out uint8 clips (N, T, H, W, 3), put on the devices once (replicated).
  """
  recon_def, recon_state = nnx.split(recon)
  repl = mesh_lib.replicated(mesh)
  recon_state = jax.device_put(recon_state, repl)
  held = jax.device_put(np.asarray(clips_u8), repl)
  frames = tuple(int(f) for f in frames if f < clips_u8.shape[1])

  @functools.partial(jax.jit, out_shardings=repl)
  def run(state, recon_state, clips):
    model = nnx.merge(graphdef, state).model
    video = preprocessing.normalize_on_device(clips)
    return policy_metrics(model, nnx.merge(recon_def, recon_state), video, frames,
                          eps=eps, cap=cap, budget=budget)

  def evaluate(state, step):
    del step
    with mesh_lib.use(mesh):
      out = jax.device_get(run(state, recon_state, held))
    return {prefix + k: float(v) for k, v in out.items()}

  return evaluate
