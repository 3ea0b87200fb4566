"""Ahead-of-time compilation of the real steps for a TPU topology one does not have
(`jax.experimental.topologies` + the `libtpu` compiler from PyPI; no TPU needed), and what the
compiled programs say: HBM per chip, FLOPs, bytes, a roofline time and clips/s.

Steps: the NTP, GRPO and reconstructor (stage 0) train steps exactly as the stages jit them
(donated state, sharded batch), and whole-clip gazing (`decoding.generate`, as `AutoGaze.gaze`
runs it). Everything is abstract (`jax.ShapeDtypeStruct` with shardings); nothing is allocated.

Two caveats about the numbers, both handled here:
* XLA's cost analysis counts a loop body once, whatever its trip count (checked: a scan of 8
  matmuls reports the FLOPs of one). The steps are full of scans (gradient accumulation,
  frame-by-frame decoding), so FLOPs are also counted from the jaxpr, matmuls and
  convolutions only, with scan lengths; XLA's bytes are scaled by the same loop factor
  (jaxpr FLOPs with trip counts / once) as an estimate of the HBM traffic.
* `optimal_seconds` is -1 for these compiles, so the time is our roofline per chip:
  max(FLOPs x passes / peak bf16 FLOP/s, bytes / HBM bandwidth) from the public per-chip
  specs below. It ignores ICI collectives and perfect overlap is assumed, so it is a lower
  bound; `passes` is 6 for f32 matmuls at precision "highest" (gazing, for parity).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.models import decoding
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import state as state_lib


@dataclasses.dataclass(frozen=True)
class Chip:
  peak_flops: float  # dense bf16 FLOP/s
  hbm_bw: float  # bytes/s
  hbm_bytes: float


# Public Cloud TPU per-chip specs (cloud.google.com/tpu/docs: v5e, v5p, v6e system architecture).
CHIPS = {
  "v5e": Chip(197e12, 819e9, 16 * 2**30),
  "v5p": Chip(459e12, 2765e9, 95 * 2**30),
  "v6e": Chip(918e12, 1640e9, 32 * 2**30),
}


def topology_devices(name: str, num_slices: int = 1):
  """The devices of a TPU topology such as 'v5e:16x16', 'v5p:4x4x4', 'v6e:8x8' (no TPU needed),
  `num_slices` times over (multi-slice: the slices talk over DCN)."""
  kind = name.partition(":")[0]
  if kind not in CHIPS or ":" not in name:
    raise ValueError(f"--topology: {name!r} is not CHIP:SHAPE with CHIP one of {sorted(CHIPS)} (e.g. v5e:16x16)")
  if num_slices < 1:
    raise ValueError(f"--num-slices: {num_slices} is not a positive number of slices")
  # Compiling only: do not take libtpu's single-user lock (another process may hold it).
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies

  try:
    return topologies.get_topology_desc(platform="tpu", topology_name=name, num_slices=num_slices).devices
  except Exception as e:  # libtpu missing, or a shape the chip does not come in
    raise ValueError(f"--topology {name}: cannot describe it ({e}); is libtpu installed?") from None


@dataclasses.dataclass
class Step:
  name: str
  fn: Callable  # jitted, with shardings
  args: tuple  # abstract arguments (jax.ShapeDtypeStruct with shardings)
  clips: int  # clips per call (global)
  passes: int = 1  # bf16 passes per matmul


def _check_batch(what: str, batch: int, mesh) -> None:
  if batch % mesh.size:
    raise ValueError(f"{what}: a global batch of {batch} clips does not split over {mesh.size} chips; "
                     f"override the batch size (a multiple of {mesh.size}) or use a smaller topology")


def _step_modules() -> dict:
  """config.stage -> that objective's step module (`make_step`, `abstract_inputs`)."""
  from autogaze_jax.train.grpo import step as grpo_step
  from autogaze_jax.train.ntp import step as ntp_step
  from autogaze_jax.train.recon import step as recon_step

  return {"recon": recon_step, "ntp": ntp_step, "grpo": grpo_step}


def train_step(cfg, mesh) -> Step:
  """Any stage's training step, through its own `make_step` and `abstract_inputs` (the very
  step the trainer runs), ready to lower for `mesh`."""
  modules = _step_modules()
  if cfg.get("stage") not in modules:
    raise ValueError(f"config.stage: {cfg.get('stage')!r} is not one of {', '.join(modules)}")
  per_call = cfg.batch_size
  if cfg.stage == "ntp":  # the batch splits over the chips once per micro-batch
    per_call = cfg.batch_size // modules["ntp"].accum_steps(cfg)
  _check_batch(f"{cfg.stage} batch", per_call, mesh)
  module = modules[cfg.stage]
  graphdef, shardings, args = module.abstract_inputs(cfg, mesh)
  fn, _ = module.make_step(graphdef, shardings, mesh, cfg)
  return Step(cfg.stage, fn, args, cfg.batch_size)


def _generate(graphdef, params, video, budgets, eps, key, temperature, *, spec, precision):
  with jax.default_matmul_precision(precision):
    return decoding.generate(nnx.merge(graphdef, params), video, budgets, eps, key, temperature, spec)


def gaze_step(gaze_cfg, mesh, batch: int, frames: int = 16, ratio: float | None = None,
              task_loss_requirement: float | None = None) -> Step:
  """Whole-clip gazing of `batch` preprocessed clips (B, frames, 3, 224, 224), greedy,
  batch-invariant, at the config's inference defaults unless given."""
  _check_batch("gazing", batch, mesh)
  inf = gaze_cfg.inference
  ratio = inf.gazing_ratio if ratio is None else ratio
  eps = inf.task_loss_requirement if task_loss_requirement is None else task_loss_requirement
  v, k = gaze_cfg.num_vision_tokens_each_frame, gaze_cfg.decoder.num_multi_token_pred
  budgets = vocab_lib.budgets_from_ratio(ratio, frames, v)
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(int(budgets.max()), k), use_task_loss=eps is not None)
  graphdef, params, psh = state_lib.abstract(lambda: GazeModel(gaze_cfg, nnx.Rngs(0)), mesh)
  repl = mesh_lib.replicated(mesh)
  size = gaze_cfg.input_img_size
  fn = jax.jit(functools.partial(_generate, graphdef, spec=spec, precision=gaze_cfg.matmul_precision),
               in_shardings=(psh, mesh_lib.batch_sharding(mesh, 5), repl, mesh_lib.batch_sharding(mesh, 2), repl, repl))
  args = (params, state_lib.struct((batch, frames, 3, size, size), jnp.float32, mesh_lib.batch_sharding(mesh, 5)),
          state_lib.struct((frames,), jnp.int32, repl), state_lib.struct((batch, frames), jnp.float32, mesh_lib.batch_sharding(mesh, 2)),
          state_lib.key_struct(mesh), state_lib.struct((), jnp.float32, repl))
  return Step("gaze", fn, args, batch, passes=6 if gaze_cfg.matmul_precision == "highest" else 1)


def matmul_flops(jaxpr) -> tuple[float, float]:
  """Global FLOPs of the matmuls and convolutions in a jaxpr: (with scan trip counts, with
  every loop body once). `cond` counts its most expensive branch; `while` bodies count once."""
  total = once = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      f = 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
      total, once = total + f, once + f
    elif name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      per_out = np.prod([rhs[d] for d in eqn.params["dimension_numbers"].rhs_spec[1:]])
      f = 2.0 * np.prod(eqn.outvars[0].aval.shape) * per_out
      total, once = total + f, once + f
    else:
      subs = [matmul_flops(j) for j in _sub_jaxprs(eqn.params)]
      if subs:
        t, o = (max(s[0] for s in subs), max(s[1] for s in subs)) if name == "cond" else np.sum(subs, 0)
        total += t * (eqn.params["length"] if name == "scan" else 1)
        once += o
  return float(total), float(once)


def _sub_jaxprs(params):
  for v in params.values():
    for x in v if isinstance(v, (tuple, list)) else (v,):
      if isinstance(x, jax.extend.core.ClosedJaxpr):
        yield x.jaxpr
      elif isinstance(x, jax.extend.core.Jaxpr):
        yield x


def analyse(step: Step, mesh, chip: Chip) -> dict:
  """Lowers and compiles `step` for the mesh's devices; memory, costs and the roofline."""
  t0 = time.perf_counter()
  with mesh_lib.use(mesh):
    traced = step.fn.trace(*step.args)
    try:
      compiled = traced.lower().compile()
    except jax.errors.JaxRuntimeError as e:  # the TPU compiler refuses programs that cannot fit
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      return _out_of_memory(step, mesh, chip, str(e), time.perf_counter() - t0)
  seconds = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops, once = matmul_flops(traced.jaxpr.jaxpr)
  loop_factor = flops / once if once else 1.0
  n = mesh.size
  hbm = mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
  per_chip_flops = flops / n
  bytes_est = float(cost.get("bytes accessed", 0.0)) * loop_factor
  t_compute = per_chip_flops * step.passes / chip.peak_flops
  t_memory = bytes_est / chip.hbm_bw
  t = max(t_compute, t_memory)
  return {
    "step": step.name, "chips": n, "mesh": dict(mesh.shape), "clips_per_step": step.clips,
    "hbm_args_gib": mem.argument_size_in_bytes / 2**30, "hbm_temp_gib": mem.temp_size_in_bytes / 2**30,
    "hbm_out_gib": mem.output_size_in_bytes / 2**30, "hbm_alias_gib": mem.alias_size_in_bytes / 2**30,
    "hbm_total_gib": hbm / 2**30, "hbm_chip_gib": chip.hbm_bytes / 2**30, "fits": hbm <= chip.hbm_bytes,
    "xla_flops": float(cost.get("flops", 0.0)), "xla_bytes": float(cost.get("bytes accessed", 0.0)),
    "flops_per_chip": per_chip_flops, "loop_factor": loop_factor, "bytes_per_chip_est": bytes_est,
    "passes": step.passes, "t_compute_s": t_compute, "t_memory_s": t_memory, "t_step_s": t,
    "bound": "compute" if t_compute >= t_memory else "memory", "clips_per_s": step.clips / t if t else float("inf"),
    "compile_s": seconds,
  }


def _out_of_memory(step: Step, mesh, chip: Chip, message: str, seconds: float) -> dict:
  """The row of a step the compiler rejected for HBM: the temporaries it asked for, no costs."""
  need = re.search(r"HLO temporaries \(([\d.]+)G\)", message)
  temp = float(need.group(1)) if need else float("nan")
  nan = float("nan")
  return {
    "step": step.name, "chips": mesh.size, "mesh": dict(mesh.shape), "clips_per_step": step.clips,
    "hbm_args_gib": nan, "hbm_temp_gib": temp, "hbm_out_gib": nan, "hbm_alias_gib": nan, "hbm_total_gib": temp,
    "hbm_chip_gib": chip.hbm_bytes / 2**30, "fits": False, "xla_flops": nan, "xla_bytes": nan,
    "flops_per_chip": nan, "loop_factor": nan, "bytes_per_chip_est": nan, "passes": step.passes,
    "t_compute_s": nan, "t_memory_s": nan, "t_step_s": nan, "bound": "hbm", "clips_per_s": 0.0,
    "compile_s": seconds, "error": message.splitlines()[0][:300],
  }
