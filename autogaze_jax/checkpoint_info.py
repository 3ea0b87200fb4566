"""`autogaze-jax ckpt info DIR`: the latest step of a training workdir (or a saved model) and
a SHA-256 digest of its model parameters, so two runs can be checked to end in the same
place. The digest covers every parameter's path, dtype, shape and bytes, in path order."""

from __future__ import annotations

import hashlib
import os

import jax
import numpy as np

from autogaze_jax import checkpointing, storage


def digest(tree) -> str:
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def info(path: str) -> dict:
  """{"kind", "step", "num_params", "sha256"} for a workdir holding ckpt/ or a model checkpoint."""
  if checkpointing.is_checkpoint(path):
    params = checkpointing.read_numpy(storage.path(path) / checkpointing.PARAMS_DIR)
    kind, step = "model", None
  elif storage.is_dir(os.path.join(path, "ckpt")):
    ckpt = checkpointing.TrainCheckpoints(path, interval=1, async_save=False)
    step = ckpt.latest_step()
    if step is None:
      raise ValueError(f"ckpt info: {path}/ckpt holds no finished checkpoint")
    state = checkpointing.read_numpy(ckpt.state_dir(step))
    ckpt.close()
    if "model" not in state:
      raise ValueError(f"ckpt info: step {step} in {path} has no 'model' parameters")
    kind, params = "training", state["model"]
  else:
    raise ValueError(f"ckpt info: {path} is neither a training workdir (with ckpt/) nor a saved model")
  return {"kind": kind, "step": step, "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
          "sha256": digest(params)}
