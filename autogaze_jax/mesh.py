"""Device mesh, the logical-axis rules table, the one activation-constraint helper, and
building a module's state straight into its shardings.

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
  """A mesh with explicit Auto axis types; one -1 in `shape` takes the remaining devices.

  Devices of several TPU slices (multi-slice, e.g. xpk --num-slices) get a hybrid mesh: the
  slices are laid along the first ("data") axis, so the fsdp all-gathers stay on each slice's
  ICI and only the data-parallel gradient reduction crosses the slower DCN."""
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
  slices = len({getattr(d, "slice_index", 0) for d in devices})
  if slices > 1:
    return jax.sharding.Mesh(_hybrid(shape, devices, slices), tuple(axes), axis_types=auto)
  return jax.make_mesh(tuple(shape), tuple(axes), axis_types=auto, devices=devices)


def _hybrid(shape, devices, slices: int) -> np.ndarray:
  from jax.experimental import mesh_utils

  if shape[0] % slices:
    raise ValueError(f"mesh shape {tuple(shape)}: the first (data) axis must be a multiple of the {slices} "
                     "slices, so that the other axes stay inside one slice")
  per_slice = (shape[0] // slices,) + tuple(shape[1:])
  across = (slices,) + (1,) * (len(shape) - 1)
  return mesh_utils.create_hybrid_device_mesh(per_slice, across, devices=devices)


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


def build_state(make, mesh):
  """(graphdef, state, shardings) of the module `make()` builds, initialised inside one jitted
  computation whose outputs are placed by the parameters' logical axes: one compile instead of
  one per initializer and shape (what eager construction costs), no unsharded copy."""
  with use(mesh):
    graphdef, shapes = nnx.split(nnx.eval_shape(make))
    shardings = nnx.get_named_sharding(shapes, mesh)
    state = jax.jit(lambda: nnx.state(make()), out_shardings=shardings)()
  return graphdef, state, shardings


def build(make, mesh) -> nnx.Module:
  """The module `make()` builds, as `build_state` initialises it."""
  graphdef, state, _ = build_state(make, mesh)
  return nnx.merge(graphdef, state)
