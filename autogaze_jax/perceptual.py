"""Perceptual terms of the reconstruction loss (official weights: DINOv2-reg 0.3, SigLIP2
0.3), built from safetensors a user supplies. Off by default: no weights can be fetched here.

  terms = perceptual.build(dinov2="dinov2.safetensors", siglip2="siglip2.safetensors")
  reconstruction_task.evaluate(model, video, ids, lens, frames, perceptual=terms)
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import feature_vit


def config() -> ml_collections.ConfigDict:
  """The stages' `perceptual` block: teacher safetensors paths (empty = that term off),
  weights, and the teachers' size; `official=True` takes both teachers from the official
  `videomae.pt` given as the stage's recon_weights (it holds them)."""
  return ml_collections.ConfigDict(dict(dinov2="", siglip2="", weights=(0.3, 0.3), size="base", official=False))


def from_config(pc, mesh=None, recon_weights: str = "") -> list:
  """[(weight, feature_fn)] for a stage's `perceptual` block."""
  if pc.get("official", False):
    if not recon_weights:
      raise ValueError("perceptual.official=True takes the teachers from recon_weights (the official "
                       "videomae.pt), but recon_weights is empty")
    from autogaze_jax import recon_weights as rw

    return from_official(rw.split_official(rw.read_state_dict(recon_weights))[1], tuple(pc.weights), mesh)
  return build(pc.dinov2 or None, pc.siglip2 or None, tuple(pc.weights), pc.size, mesh)


def extractor(cfg, tensors: dict | None = None, prefix: str = "", mesh=None, seed: int = 0):
  """A FeatureViT, with HF-layout weights when `tensors` are given (else random init)."""
  mesh = mesh or mesh_lib.make_mesh()
  with mesh_lib.use(mesh):
    model = feature_vit.FeatureViT(cfg, nnx.Rngs(seed))
  if tensors is not None:
    nnx.update(model, feature_vit.load_state(model, tensors, prefix))
  return model


def build(dinov2: str | None = None, siglip2: str | None = None, weights=(0.3, 0.3),
          size: str = "base", mesh=None) -> list:
  """[(weight, feature_fn)] for the extractors whose safetensors paths are given."""
  from safetensors.numpy import load_file

  terms = []
  for path, cfg, w in ((dinov2, feature_vit.dinov2_reg_config(size), weights[0]),
                       (siglip2, feature_vit.siglip2_config(size), weights[1])):
    if path:
      terms.append((w, extractor(cfg, load_file(path), mesh=mesh)))
  return terms


def from_official(tensors: dict, weights=(0.3, 0.3), mesh=None) -> list:
  """The two teachers inside the official `videomae.pt` state dict (after the `module.`/
  `mae.` prefixes are stripped: `dinov2_reg.*`, `siglip2.*`)."""
  return [
    (weights[0], extractor(feature_vit.dinov2_reg_config("base"), tensors, "dinov2_reg.", mesh)),
    (weights[1], extractor(feature_vit.siglip2_config("base"), tensors, "siglip2.", mesh)),
  ]
