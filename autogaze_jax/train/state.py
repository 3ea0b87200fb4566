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


def make_optimizer(cfg, steps: int) -> optax.GradientTransformation:
  """Adam or SGD with linear warmup and linear decay to 0 (TRAINING.md §7.2)."""
  sched = optax.join_schedules(
    [optax.linear_schedule(0.0, cfg.lr, max(1, cfg.warmup_steps)),
     optax.linear_schedule(cfg.lr, cfg.lr * cfg.final_lr_fraction, max(1, steps - cfg.warmup_steps))],
    [max(1, cfg.warmup_steps)],
  )
  if cfg.name == "adamw":
    opt = optax.adamw(sched, b1=0.9, b2=0.999, weight_decay=cfg.weight_decay)
  elif cfg.name == "sgd":
    opt = optax.sgd(sched, momentum=cfg.momentum)
  else:
    raise ValueError(f"optimizer.name: {cfg.name!r} is not one of 'adamw', 'sgd'")
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt) if cfg.grad_clip else opt


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
  graphdef, _, shardings = abstract(lambda: TrainState(make_model(), tx), mesh)
  with mesh_lib.use(mesh):
    state = jax.jit(lambda: nnx.state(TrainState(make_model(), tx)), out_shardings=shardings)()
  return graphdef, state, shardings
