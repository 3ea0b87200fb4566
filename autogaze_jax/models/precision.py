"""Reduced-precision gaze models for accelerators (the official GPU path runs under bf16
autocast): every parameter but the two heads in a low-precision dtype, so the convolutions,
projections, MLPs, attention products and the KV cache run in it, while the attention softmax,
the norms' statistics, the logits and the task-loss head stay float32. The float32 model (the
default everywhere) is untouched and stays exact to the official code."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FLOAT32_PARAMS = ("lm_head", "task_loss_prediction_head")


def dtype_of(name: str):
  if name not in DTYPES:
    raise ValueError(f"precision: unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
  return DTYPES[name]


def cast(model, name: str):
  """A copy of `model` whose parameters (except the heads) are in dtype `name`."""
  dtype = dtype_of(name)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  flat = nnx.to_flat_state(params)
  keep = lambda path: any(str(p) in FLOAT32_PARAMS for p in path)
  cast_flat = [(path, v.replace(jnp.asarray(v[...], jnp.float32 if keep(path) else dtype))) for path, v in flat]
  return nnx.merge(graphdef, nnx.from_flat_state(cast_flat), rest)
