"""Orbax checkpoints of gaze-model parameters (the only module that imports orbax).

Layout of a checkpoint directory:
  autogaze_jax.json   the model config (ml_collections, JSON)
  params/             Orbax StandardCheckpointer tree of the nnx.Param state
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "autogaze_jax.json"
PARAMS_DIR = "params"


def is_checkpoint(path: str) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG_FILE)) and os.path.isdir(
    os.path.join(path, PARAMS_DIR)
  )


def save(path: str, params_state, cfg) -> None:
  """Writes params (a pytree of arrays) and the config; refuses to overwrite."""
  path = os.path.abspath(path)
  if os.path.exists(os.path.join(path, PARAMS_DIR)):
    raise FileExistsError(f"checkpoint: {path} already holds a checkpoint; choose another --out")
  os.makedirs(path, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(path, PARAMS_DIR), params_state)
    ckptr.wait_until_finished()
  with open(os.path.join(path, CONFIG_FILE), "w") as f:
    f.write(cfg.to_json(indent=2))


def load_config(path: str) -> ml_collections.ConfigDict:
  with open(os.path.join(path, CONFIG_FILE)) as f:
    data = json.load(f)
  cfg = ml_collections.ConfigDict(data)
  cfg.scales = tuple(cfg.scales)
  return cfg


def restore(path: str, abstract_state):
  """Restores into the shapes/shardings of `abstract_state` (jax.ShapeDtypeStruct leaves)."""
  path = os.path.abspath(path)
  with ocp.StandardCheckpointer() as ckptr:
    try:
      return ckptr.restore(os.path.join(path, PARAMS_DIR), abstract_state)
    except (ValueError, KeyError) as e:
      raise ValueError(f"checkpoint: {path} does not match the model config: {e}") from None


def abstract_like(tree):
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
  )
