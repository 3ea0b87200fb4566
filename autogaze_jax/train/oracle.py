"""The oracle: the frozen reconstructor and the perceptual teachers of its loss, which score
gazes for every later stage (greedy labels, GRPO rewards, held-out evaluation). It is one
config block, `config.oracle` = {model, workdir | weights, perceptual}, and one module whose
state the jitted steps take as a replicated argument (never baked in as constants).

The reconstructor comes from a stage-0 workdir (its `recon_final/` model, written by
`autogaze-jax train --config configs/recon.py:...`), from official VideoMAE weights
(.pt/.safetensors), or, with neither, random init (smoke tests only). The perceptual teachers
(official: DINOv2-reg 0.3 + SigLIP2 0.3) come from HF-layout safetensors a user supplies, or
from the official videomae.pt with `perceptual.official=True`; off by default.
"""

from __future__ import annotations

import os

import jax
import ml_collections
from flax import nnx

from autogaze_jax import checkpointing, storage
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import feature_vit, vit_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import state as state_lib
from autogaze_jax.weights import hf_vit
from autogaze_jax.weights import recon as recon_weights_lib

FINAL_MODEL = "recon_final"  # the reconstructor a stage-0 workdir exports when it ends


class Teachers(nnx.Module):
  """Perceptual teachers with their loss weights (the weights are static graph data)."""

  def __init__(self, terms=()):
    self.weights = tuple(float(w) for w, _ in terms)
    self.models = nnx.List([t for _, t in terms])

  def terms(self) -> list:
    """[(weight, FeatureViT)], the `perceptual=` argument of `task.evaluate`."""
    return list(zip(self.weights, self.models))


class Oracle(nnx.Module):
  """The frozen reconstructor and its perceptual teachers, one pytree."""

  def __init__(self, recon: Reconstructor, teachers: Teachers | None = None):
    self.recon = recon
    self.teachers = teachers if teachers is not None else Teachers()

  def terms(self) -> list:
    return self.teachers.terms()


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
  """The final reconstructor a stage-0 directory exported (parameters only, no optimizer)."""
  cfg = stage0_config(workdir)
  final = os.path.join(workdir, FINAL_MODEL)
  if not checkpointing.is_checkpoint(final):
    raise ValueError(f"reconstructor: {workdir} has no {FINAL_MODEL}/ (has its stage 0 finished?)")
  model = mesh_lib.build(lambda: Reconstructor(cfg.model, nnx.Rngs(0)), mesh)
  nnx.update(model, checkpointing.restore(final, checkpointing.abstract_like(nnx.state(model, nnx.Param))))
  return model


def load_reconstructor(model_cfg, mesh, *, workdir: str = "", weights: str = "", seed: int = 0) -> Reconstructor:
  """From `workdir` (stage 0) or `weights` (official videomae .pt/.safetensors, built with
  `model_cfg`); with neither, a random reconstructor (for tests and smoke runs only)."""
  if workdir and weights:
    raise ValueError("oracle: give a stage-0 workdir or official weights, not both")
  if workdir:
    return from_stage0(workdir, mesh)
  if weights:
    return recon_weights_lib.load(weights, model_cfg, mesh)
  return mesh_lib.build(lambda: Reconstructor(model_cfg, nnx.Rngs(seed)), mesh)


def resolve(ocfg) -> ml_collections.ConfigDict:
  """The oracle block with `model` taken from its stage-0 workdir's config when there is one,
  so the config alone fixes the oracle's architecture (what the step builders compile for)."""
  ocfg = ocfg.copy_and_resolve_references()
  if ocfg.workdir:
    ocfg.model = stage0_config(ocfg.workdir).model
  return ocfg


def teachers_config(pc) -> list:
  """[(weight, FeatureViT config, safetensors path or None, prefix)] of a `perceptual` block:
  the teachers whose paths are given, or both official ones (`official=True`)."""
  if pc.get("official", False):
    return [(pc.weights[0], vit_config.dinov2_reg_config("base"), None, "dinov2_reg."),
            (pc.weights[1], vit_config.siglip2_config("base"), None, "siglip2.")]
  out = []
  for path, make, w in ((pc.dinov2, vit_config.dinov2_reg_config, pc.weights[0]),
                        (pc.siglip2, vit_config.siglip2_config, pc.weights[1])):
    if path:
      out.append((w, make(pc.size), path, ""))
  return out


def load_teachers(pc, mesh=None, official_weights: str = "") -> Teachers:
  """The teachers of a `perceptual` block, loaded; official ones from `official_weights`."""
  from safetensors.numpy import load_file

  specs = teachers_config(pc)
  official = None
  if pc.get("official", False):
    if not official_weights:
      raise ValueError("perceptual.official=True takes the teachers from the oracle's weights (the official "
                       "videomae.pt), but oracle.weights is empty")
    official = recon_weights_lib.split_official(recon_weights_lib.read_state_dict(official_weights))[1]
  return Teachers([(w, extractor(cfg, official if path is None else load_file(path), prefix, mesh))
                   for w, cfg, path, prefix in specs])


def load(ocfg, mesh, seed: int = 0) -> Oracle:
  """The oracle of a config block (see the module docstring)."""
  recon = load_reconstructor(ocfg.model, mesh, workdir=ocfg.workdir, weights=ocfg.weights, seed=seed)
  return Oracle(recon, load_teachers(ocfg.perceptual, mesh, ocfg.weights))


def abstract(ocfg, mesh):
  """(graphdef, state of jax.ShapeDtypeStruct replicated over `mesh`) of the oracle that
  `load(resolve(ocfg))` gives, nothing read or allocated (step builders and AOT)."""
  ocfg = resolve(ocfg)
  return abstract_module(lambda: Oracle(Reconstructor(ocfg.model, nnx.Rngs(0)), _random_teachers(ocfg.perceptual)),
                         mesh)


def abstract_teachers(pc, mesh):
  """(graphdef, abstract replicated state) of `load_teachers(pc)`."""
  return abstract_module(lambda: _random_teachers(pc), mesh)


def abstract_module(make, mesh):
  with mesh_lib.use(mesh):
    graphdef, state = nnx.split(nnx.eval_shape(make))
  repl = mesh_lib.replicated(mesh)
  return graphdef, jax.tree.map(lambda x: state_lib.struct(x.shape, x.dtype, repl), state)


def _random_teachers(pc) -> Teachers:
  return Teachers([(w, feature_vit.FeatureViT(cfg, nnx.Rngs(0))) for w, cfg, _, _ in teachers_config(pc)])


def replicated_state(module: nnx.Module, mesh):
  """The module's state, replicated over the mesh (the `frozen` argument of a step)."""
  return jax.device_put(nnx.state(module), mesh_lib.replicated(mesh))


def extractor(cfg, tensors: dict | None = None, prefix: str = "", mesh=None, seed: int = 0):
  """A FeatureViT, with HF-layout weights when `tensors` are given (else random init)."""
  mesh = mesh or mesh_lib.make_mesh()
  model = mesh_lib.build(lambda: feature_vit.FeatureViT(cfg, nnx.Rngs(seed)), mesh)
  if tensors is not None:
    nnx.update(model, hf_vit.load_state(model, tensors, prefix))
  return model
