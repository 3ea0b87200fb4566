"""Mapping foreign (PyTorch-layout) state dicts onto NNX parameter paths, with checks.

A mapping is {foreign name: (our path tuple, transform)}. Every name and shape is checked;
the first problem raises ValueError naming the parameter and both shapes.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx


def conv_to_nnx(w):  # (O, I, kT, kH, kW) -> (kT, kH, kW, I, O)
  return np.transpose(w, (2, 3, 4, 1, 0))


def linear_to_nnx(w):  # (out, in) -> (in, out)
  return np.ascontiguousarray(w.T)


def patch_conv_to_linear(w):  # (O, C, kh, kw) -> (C*kh*kw, O), patches flattened (c, row, col)
  return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)


def identity(w):
  return w


def convert(tensors: dict, mapping: dict, expected_shapes: dict) -> dict:
  missing = sorted(set(mapping) - set(tensors))
  if missing:
    raise ValueError(f"checkpoint: missing parameter {missing[0]} ({len(missing)} missing in all)")
  extra = sorted(set(tensors) - set(mapping))
  if extra:
    raise ValueError(f"checkpoint: unexpected parameter {extra[0]} ({len(extra)} unexpected in all)")
  out = {}
  for name in sorted(mapping):
    path, fn = mapping[name]
    value = np.asarray(fn(np.asarray(tensors[name], dtype=np.float32)))
    want = tuple(expected_shapes[path])
    if value.shape != want:
      raise ValueError(
        f"checkpoint: parameter {name} has shape {tuple(np.shape(tensors[name]))} "
        f"(-> {value.shape} in JAX layout) but the config expects {want} for {'/'.join(map(str, path))}"
      )
    out[path] = value
  return out


def expected_shapes(state) -> dict:
  """{path: shape} of a state, concrete or abstract (from nnx.eval_shape)."""
  return {path: tuple(v.shape) for path, v in nnx.to_flat_state(state)}


def load_into(state, arrays: dict):
  """Returns a copy of `state` with the given arrays (placed like the current values; an
  abstract state's values become host arrays for the caller to place)."""
  flat = nnx.to_flat_state(state)
  for path, v in flat:
    if path in arrays:
      current = v.get_value()
      place = getattr(current, "sharding", None) if isinstance(current, jax.Array) else None
      v.set_value(jax.device_put(arrays[path], place))
  return nnx.from_flat_state(flat)
