"""Held-out RL validation (TRAINING.md §5.6): greedy decoding with the per-frame cap and the
task-loss stop rule at ε, as the official validation runs it.

Reports the fraction of patches gazed (the paper's "gaze ratio at loss ε", official ε = 0.7,
cap int(0.75 V)) and the reconstruction loss those gazes actually reach on `frames`. Unlike
`ratio_at_eps` (budget-only decoding, where the policy looks), this also depends on how well
the task-loss head predicts the loss, which GRPO trains too.
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


def stop_rule_metrics(model, recon, video, frames, *, eps: float, cap: int) -> dict:
  """model: GazeModel; recon: Reconstructor; video (B, T, 3, H, W) preprocessed; frames (R,)."""
  b, t = video.shape[:2]
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(cap, model.gaze_decoder.k), use_task_loss=True)
  ids, lens = decoding.generate(model, video, jnp.full((t,), cap, jnp.int32), jnp.full((b, t), eps, jnp.float32),
                                None, 1.0, spec)
  out = reconstruction_task.evaluate(recon, video, ids, lens, jnp.asarray(frames, jnp.int32))
  return {"gaze_ratio_eps_stop": out["metrics"]["avg_gazing_ratio_per_frame"],
          "loss_eps_stop": out["loss_each_frame"].mean()}


def make_evaluator(graphdef, recon, mesh, clips_u8, *, eps: float, cap: int, frames, prefix: str = "eval_"):
  """(state, step) -> dict of floats for a TrainState whose `model` is the gaze model;
  clips_u8 (N, T, H, W, 3) are put on the devices once."""
  recon_def, recon_state = nnx.split(recon)
  repl = mesh_lib.replicated(mesh)
  args = jax.device_put((recon_state, np.asarray(clips_u8)), repl)
  frames = tuple(int(f) for f in frames if f < clips_u8.shape[1])

  @functools.partial(jax.jit, out_shardings=repl)
  def run(state, recon_state, clips):
    recon_model = nnx.merge(recon_def, recon_state)
    video = preprocessing.normalize_on_device(clips)
    return stop_rule_metrics(nnx.merge(graphdef, state).model, recon_model, video, frames, eps=eps, cap=cap)

  def evaluate(state, step):
    del step
    with mesh_lib.use(mesh):
      return {prefix + k: float(v) for k, v in jax.device_get(run(state, *args)).items()}

  return evaluate
