"""Training state: a model plus its optax optimizer, as one NNX module used functionally."""

from __future__ import annotations

import jax
import optax
from flax import nnx

from autogaze_jax import mesh as mesh_lib


class TrainState(nnx.Module):
  def __init__(self, model: nnx.Module, tx: optax.GradientTransformation):
    self.model = model
    self.opt = nnx.Optimizer(model, tx, wrt=nnx.Param)


def abstract(make, mesh):
  """Shapes and shardings of the module `make()` builds, nothing allocated (e.g. for AOT
  compilation on a topology one does not have): returns (graphdef, state of
  jax.ShapeDtypeStruct with shardings, shardings)."""
  with mesh_lib.use(mesh):
    graphdef, shapes = nnx.split(nnx.eval_shape(make))
    shardings = nnx.get_named_sharding(shapes, mesh)
  structs = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)
  return graphdef, structs, shardings


def create(make_model, tx, mesh):
  """Sharded state without a host-side full copy: returns (graphdef, state, shardings)."""
  return mesh_lib.build_state(lambda: TrainState(make_model(), tx), mesh)


def abstract_train_state(make_model, tx, mesh):
  """(graphdef, abstract TrainState, shardings) of `TrainState(make_model(), tx)`."""
  return abstract(lambda: TrainState(make_model(), tx), mesh)


def struct(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


def key_struct(mesh) -> jax.ShapeDtypeStruct:
  """The abstract step key: a typed PRNG key, replicated."""
  return struct((), jax.eval_shape(lambda: jax.random.key(0)).dtype, mesh_lib.replicated(mesh))


def video_struct(cfg, mesh) -> jax.ShapeDtypeStruct:
  """A global batch of uint8 clips (batch_size, clip_len, S, S, 3), split over the batch axes."""
  return struct((cfg.batch_size, cfg.clip_len, cfg.image_size, cfg.image_size, 3), jax.numpy.uint8,
                mesh_lib.batch_sharding(mesh, 5))
