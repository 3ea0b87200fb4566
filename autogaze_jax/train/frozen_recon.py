"""The frozen reconstructor that later stages score gazes with (NTP labels, GRPO rewards,
evaluation), from a stage-0 training directory, official weights, or random init (tests).

A stage-0 directory is what `autogaze-jax train --config configs/recon.py:...` writes:
`config.json` (the stage config) and `ckpt/` (Orbax TrainState steps); the latest step's
model parameters are used.
"""

from __future__ import annotations

import os

import ml_collections
from flax import nnx

from autogaze_jax import checkpointing, recon_weights, storage
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import state as state_lib


class Scorer(nnx.Module):
  """The frozen reconstructor with the perceptual teachers of its loss, one pytree that the
  jitted GRPO step takes as an argument (replicated, not baked in as constants)."""

  def __init__(self, recon: Reconstructor, terms=()):
    self.recon = recon
    self.weights = tuple(float(w) for w, _ in terms)  # static: part of the graph definition
    self.teachers = nnx.List([t for _, t in terms])

  def terms(self) -> list:
    return list(zip(self.weights, self.teachers))


def unpack(frozen) -> tuple:
  """(reconstructor, perceptual terms) of a Scorer, or of a bare Reconstructor (no terms)."""
  if isinstance(frozen, Scorer):
    return frozen.recon, frozen.terms()
  return frozen, []


def stage0_config(workdir: str) -> ml_collections.ConfigDict:
  """The stage config saved in a stage-0 directory (model, optimizer, steps)."""
  path = os.path.join(workdir, "config.json")
  if not storage.exists(path):
    raise ValueError(f"reconstructor: {workdir} is not a stage-0 directory (no config.json)")
  cfg = ml_collections.ConfigDict(storage.read_json(path))
  if cfg.get("stage") != "recon":
    raise ValueError(f"reconstructor: {path} is a {cfg.get('stage')!r} stage, not 'recon'")
  cfg.model.scales = tuple(cfg.model.scales)
  return cfg


def from_stage0(workdir: str, mesh) -> Reconstructor:
  """The reconstructor of the latest checkpoint in a stage-0 directory."""
  cfg = stage0_config(workdir)
  if not storage.is_dir(os.path.join(workdir, "ckpt")):
    raise ValueError(f"reconstructor: {workdir} has no ckpt/ directory (was stage 0 run there?)")
  tx = state_lib.make_optimizer(cfg.optimizer, cfg.steps)
  graphdef, state, _ = state_lib.create(lambda: Reconstructor(cfg.model, nnx.Rngs(0)), tx, mesh)
  ckpt = checkpointing.TrainCheckpoints(workdir, 1)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise ValueError(f"reconstructor: no checkpoint steps under {workdir}/ckpt")
  restored = ckpt.restore(step, checkpointing.abstract_like(state))
  ckpt.close()
  return nnx.merge(graphdef, restored).model


def load(model_cfg, mesh, *, workdir: str = "", weights: str = "", seed: int = 0) -> Reconstructor:
  """From `workdir` (stage 0) or `weights` (official videomae .pt/.safetensors, built with
  `model_cfg`); with neither, a random reconstructor (for tests and smoke runs only)."""
  if workdir and weights:
    raise ValueError("reconstructor: give a stage-0 workdir or official weights, not both")
  if workdir:
    return from_stage0(workdir, mesh)
  if weights:
    return recon_weights.load(weights, model_cfg, mesh)
  with mesh_lib.use(mesh):
    return Reconstructor(model_cfg, nnx.Rngs(seed))
