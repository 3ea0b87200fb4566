"""Device mesh, the logical-axis rules table, and the one activation-constraint helper.

Modules only ever see logical names ("batch", "embed", ...). This file maps them onto the
mesh axes ("data", "fsdp") with one rules table.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from flax import nnx
from flax.core import spmd as flax_spmd
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp")

# Logical name -> mesh axes. Parameters of the 3M gaze model are tiny, so by default they are
# replicated except for FSDP over "embed"; the batch is split over every device.
DEFAULT_RULES = (
  ("batch", ("data", "fsdp")),
  ("embed", "fsdp"),
  ("mlp", None),
  ("heads", None),
  ("kv_heads", None),
  ("vocab", None),
  ("conv_in", None),
  ("act_embed", None),  # activations: the batch is already split over both axes
)


def make_mesh(shape=(-1, 1), axes=AXES, devices=None) -> jax.sharding.Mesh:
  """A mesh with explicit Auto axis types; one -1 in `shape` takes the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  shape = list(shape)
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {tuple(shape)}: at most one -1")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if len(devices) % known:
      raise ValueError(f"mesh shape {tuple(shape)} does not divide {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  need = int(np.prod(shape))
  if need > len(devices):
    raise ValueError(f"mesh shape {tuple(shape)} needs {need} devices, have {len(devices)}")
  devices = devices[:need]  # an explicit smaller shape uses the first devices
  auto = (jax.sharding.AxisType.Auto,) * len(axes)
  return jax.make_mesh(tuple(shape), tuple(axes), axis_types=auto, devices=devices)


@contextlib.contextmanager
def use(mesh, rules=DEFAULT_RULES):
  """Enters the mesh and the logical rules (model construction needs both)."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    yield mesh


def logical_to_spec(names, rules=None) -> P:
  rules = dict(rules if rules is not None else (flax_spmd.get_logical_axis_rules() or DEFAULT_RULES))
  return P(*[rules.get(n) if n is not None else None for n in names])


def constrain(x, names):
  """with_sharding_constraint by logical names; a no-op outside a multi-device mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names))


def batch_sharding(mesh, ndim: int) -> jax.sharding.NamedSharding:
  """Sharding for an array whose leading axis is the batch."""
  spec = logical_to_spec(("batch",) + (None,) * (ndim - 1), DEFAULT_RULES)
  return jax.sharding.NamedSharding(mesh, spec)


def replicated(mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, P())
