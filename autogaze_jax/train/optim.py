"""The one optimizer factory of every stage, from one config schema (a stage config's
`optimizer` block; fields other than name and lr take the defaults in OPTIONAL):

  name          adam (b1 0.9, b2 0.999, eps 1e-8) | adamw (the same with decoupled weight decay) | sgd
  lr, min_lr    the peak learning rate, and where the linear schedule ends
  schedule      linear: warmup 0 -> lr over warmup_steps, then lr -> min_lr over the remaining
                steps | constant: lr throughout (no warmup)
  warmup_steps, weight_decay (adamw), momentum (sgd), grad_clip (global norm; 0 = none)
"""

from __future__ import annotations

import types

import optax

NAMES = ("adam", "adamw", "sgd")
SCHEDULES = ("linear", "constant")
# field: default (name and lr have none)
OPTIONAL = dict(min_lr=0.0, schedule="constant", warmup_steps=0, weight_decay=0.0, momentum=0.0, grad_clip=0.0)


def schedule(cfg, steps: int) -> optax.Schedule:
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.lr)
  if cfg.schedule != "linear":
    raise ValueError(f"optimizer.schedule: {cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
  if cfg.warmup_steps <= 0:
    return optax.linear_schedule(cfg.lr, cfg.min_lr, max(1, steps))
  return optax.join_schedules(
    [optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps),
     optax.linear_schedule(cfg.lr, cfg.min_lr, max(1, steps - cfg.warmup_steps))],
    [cfg.warmup_steps],
  )


def make(cfg, steps: int) -> optax.GradientTransformation:
  """The optimizer of `cfg` (an `optimizer` block) for a run of `steps` optimizer steps."""
  unknown = sorted(set(cfg) - {"name", "lr", *OPTIONAL})
  if unknown or "name" not in cfg or "lr" not in cfg:
    raise ValueError(f"optimizer: fields are name, lr and optionally {', '.join(OPTIONAL)}; got {sorted(cfg)}")
  cfg = types.SimpleNamespace(**{**OPTIONAL, **dict(cfg)})
  if cfg.schedule == "constant" and (cfg.warmup_steps or cfg.min_lr):
    raise ValueError(f"optimizer: warmup_steps={cfg.warmup_steps} / min_lr={cfg.min_lr} need schedule='linear' "
                     "(the constant schedule has neither)")
  sched = schedule(cfg, steps)
  if cfg.name == "adam":
    tx = optax.adam(sched, b1=0.9, b2=0.999, eps=1e-8)
  elif cfg.name == "adamw":
    tx = optax.adamw(sched, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay)
  elif cfg.name == "sgd":
    tx = optax.sgd(sched, momentum=cfg.momentum or None)
  else:
    raise ValueError(f"optimizer.name: {cfg.name!r} is not one of {', '.join(NAMES)}")
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx) if cfg.grad_clip else tx
