"""Stage 0's step: the reconstructor trained on random multi-scale gazes (docs/design.md,
"Stage 0: the reconstructor"). Per clip and frame a gaze ratio ~ U[min, max] picks that many
distinct random tokens; the loss is the per-frame reconstruction loss of
int(T * recon_sample_rate) random frames, with the optional perceptual teachers.

  step, batch_shardings = make_step(graphdef, shardings, mesh, cfg)
  state, metrics = step(state, {"video": uint8 (B, T, S, S, 3)}, key, frozen)  # frozen: teachers
"""

from __future__ import annotations

import functools

import jax
import optax
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import optim, oracle, task
from autogaze_jax.train import state as state_lib


def vocab_and_slots(cfg) -> tuple[int, int]:
  """V tokens per frame, and the static gaze slots per frame (ratio_max * V)."""
  vocab = sum(recon_config.tokens_per_scale(cfg.model))
  return vocab, max(1, int(cfg.gaze.ratio_max * vocab))


def train_step(graphdef, teachers_def, state, batch, key, frozen, *, cfg, vocab: int, slots: int):
  """One optimizer step on random gazes; `frozen` is the perceptual teachers' state."""
  ts = nnx.merge(graphdef, state)
  terms = nnx.merge(teachers_def, frozen).terms()
  video = image_lib.normalize_on_device(batch["video"])
  k_gaze, k_frames = jax.random.split(key)
  ids, lens = task.random_gazes(k_gaze, video.shape[0], video.shape[1], vocab, slots, cfg.gaze.ratio_min, cfg.gaze.ratio_max)
  frames = task.sample_frames(k_frames, video.shape[1], cfg.model.recon_sample_rate)
  model_graph, params, rest = nnx.split(ts.model, nnx.Param, ...)

  def loss_fn(p):
    model = nnx.merge(model_graph, p, rest)
    out = task.evaluate(model, video, ids, lens, frames, perceptual=terms)
    return out["loss"].mean(), out

  (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  ts.opt.update(ts.model, grads)
  m = {"loss": loss, "l1": out["l1_each_frame"].mean(), "grad_norm": optax.global_norm(grads),
       "gaze_ratio": out["metrics"]["avg_gazing_ratio_per_frame"]}
  return nnx.state(ts), m


def make_step(graphdef, shardings, mesh, cfg):
  """(jitted step, batch shardings): (state, batch, key, frozen) -> (state, metrics); the
  state is donated, the clips split over the mesh, key and teachers replicated."""
  vocab, slots = vocab_and_slots(cfg)
  teachers_def, _ = oracle.abstract_teachers(cfg.perceptual, mesh)
  batch_sh = {"video": mesh_lib.batch_sharding(mesh, 5)}
  repl = mesh_lib.replicated(mesh)
  step = jax.jit(functools.partial(train_step, graphdef, teachers_def, cfg=cfg, vocab=vocab, slots=slots),
                 in_shardings=(shardings, batch_sh, repl, repl), out_shardings=(shardings, repl),
                 donate_argnums=0)
  return step, batch_sh


def abstract_inputs(cfg, mesh):
  """(graphdef, shardings, (state, batch, key, frozen) as jax.ShapeDtypeStruct): what
  `make_step`'s step is compiled for, nothing allocated."""
  tx = optim.make(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.abstract_train_state(lambda: Reconstructor(cfg.model, nnx.Rngs(0)), tx,
                                                              mesh)
  _, frozen = oracle.abstract_teachers(cfg.perceptual, mesh)
  return graphdef, shardings, (state, {"video": state_lib.video_struct(cfg, mesh)}, state_lib.key_struct(mesh),
                               frozen)
