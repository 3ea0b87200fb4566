"""What every stage's trainer shares: the opening (`begin`: workdir, config.json, mesh), the
loop (`run`: sharded jitted steps, deterministic batches, Orbax checkpoints with automatic
resume and preemption saves, JSONL/TensorBoard metrics, periodic evaluation, a progress bar,
and the one non-finite check, on log and checkpoint steps), and the closing (`export_model`:
the final model, parameters only, that later stages and users load; `finish`: report.json)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from autogaze_jax import checkpointing, distributed, storage
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.train import metric_log, step_timing


@dataclasses.dataclass
class Stage:
  """What a training stage supplies to the loop."""

  step_fn: Callable  # a `make_step` step: (state, batch, key, frozen) -> (state, metrics); donates state
  host_batch: Callable  # step -> numpy pytree (this process's part of the global batch)
  put_batch: Callable  # numpy pytree -> global jax arrays
  evaluate: Callable | None = None  # (state, step) -> dict of scalars
  clips_per_step: int = 1
  data_iterator: object = None  # a Grain iterator behind host_batch: checkpointed with the state
  frozen: object = ()  # the step's frozen argument (oracle or teachers state), the same every step
  tokens_per_step: int = 0  # video tokens a step consumes (clips x frames x tokens per frame), for tokens/s


def begin(cfg, workdir: str):
  """Creates `workdir`, writes the stage config to config.json (process 0) and returns the
  mesh of `cfg.mesh.shape`."""
  storage.makedirs(workdir)
  if distributed.is_main():
    storage.write_text(os.path.join(workdir, "config.json"), cfg.to_json(indent=2))
  return mesh_lib.make_mesh(tuple(cfg.mesh.shape))


def export_model(workdir: str, name: str, model, model_cfg) -> str:
  """Writes the model's parameters and config to <workdir>/<name> (once: a resumed, finished
  run keeps the first export) and returns that path."""
  path = os.path.join(workdir, name)
  if not checkpointing.is_checkpoint(path):
    checkpointing.save(path, nnx.state(model, nnx.Param), model_cfg)
  return path


def finish(workdir: str, report: dict) -> dict:
  """Adds the loop's step_times.json to the report, writes report.json (process 0) and
  returns the report."""
  times = os.path.join(workdir, "step_times.json")
  if storage.exists(times):
    report = {**report, "step_times": storage.read_json(times)}
  if distributed.is_main():
    storage.write_json(os.path.join(workdir, "report.json"), report)
  return report


class Preempted(RuntimeError):
  """The loop saved at a preemption notice and stopped before its last step: nothing after
  it (exports, later stages) should run; rerunning the same command resumes."""


@jax.jit
def _merge_flags(a: dict, b: dict) -> dict:
  return jax.tree.map(jnp.maximum, a, b)


def check_finite(metrics: dict, step: int, last_saved) -> None:
  """Raises on a non-finite metric, or on a `nonfinite_<quantity>` flag (a step since the last
  check skipped its update because that quantity was NaN or inf)."""
  bad = {k[len("nonfinite_"):]: "nan/inf" for k, v in metrics.items()
         if k.startswith("nonfinite_") and float(np.asarray(v)) > 0}
  bad.update({k: float(np.asarray(v).ravel()[0]) for k, v in metrics.items() if not np.all(np.isfinite(v))})
  if bad:
    raise FloatingPointError(
      f"step {step}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} (metrics are checked on "
      f"log and checkpoint steps); stopping. " + (f"The last checkpoint (step {last_saved}) is intact." if last_saved
                                                     else "No checkpoint was written yet."))


def _first_step(stage: Stage, state, batch, key):
  """Compiles the step for the first batch, logs its memory and FLOPs, and returns (the
  compiled step, its facts). A step that cannot be lowered as is (not a jax.jit) stays."""
  if not hasattr(stage.step_fn, "lower"):
    return stage.step_fn, {}
  compiled = stage.step_fn.lower(state, batch, key, stage.frozen).compile()
  facts = step_timing.compiled_facts(compiled)
  if jax.process_index() == 0 and facts:
    mem = ", ".join(f"{k[:-4]} {facts[k]:.3f} GiB" for k in ("argument_gib", "temp_gib", "output_gib") if k in facts)
    flops = f"; {facts['flops_per_step'] / 1e9:.2f} GFLOP per step" if "flops_per_step" in facts else ""
    print(f"compiled step: {mem}{flops}", file=sys.stderr, flush=True)
  return compiled, facts


def run(stage: Stage, state, *, workdir: str, steps: int, seed: int, log_every: int,
        eval_every: int, checkpoint_every: int, keep: int = 3, progress: bool = True, profile: str = "",
        final: bool = True):
  """Trains from the latest checkpoint in `workdir` (or from `state`) up to `steps`.

  Raises `Preempted` after saving at a preemption notice before the last step, or at it when
  `final` is False (a stage that goes on after this run, e.g. NTP's DAgger round).
  Writes metrics.jsonl (per log step: the metrics, steps/s and clips/s over the window since
  the last log step, which ends at a synced step, tokens/s and achieved TFLOP/s, MFU on a chip
  of known peak) and step_times.json (`step_timing`). `profile` 'START:STOP' writes an XProf
  trace of those steps to <workdir>/profile.
  """
  traced = step_timing.parse_profile(profile)
  ckpt = checkpointing.TrainCheckpoints(workdir, checkpoint_every, keep)
  writer = metric_log.Writer(workdir)
  start = ckpt.latest_step() or 0
  if start:
    state = ckpt.restore(start, checkpointing.abstract_like(state), stage.data_iterator)
    if jax.process_index() == 0:
      print(f"resuming from step {start} ({workdir})", file=sys.stderr, flush=True)
  ckpt.warm(state)
  root = jax.random.key(seed)
  if start == 0 and stage.evaluate is not None:
    writer.write(0, stage.evaluate(state, 0))
  clock = step_timing.StepClock()
  devices = jax.device_count()
  device_kind = jax.devices()[0].device_kind
  t_last, n_last = time.perf_counter(), start
  window_start, window_from = t_last, start
  bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress or jax.process_index() != 0,
             desc="train", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
  step_fn, facts, tracing, preempted = None, {}, False, 0
  try:
    done, flags = start, None
    for step in bar:
      t0 = time.perf_counter()
      host = stage.host_batch(step)
      clock.data(time.perf_counter() - t0)
      batch = stage.put_batch(host)
      key = jax.random.fold_in(root, step)
      if traced and step == traced[0]:
        jax.profiler.start_trace(os.path.join(workdir, "profile"))
        tracing = True
      if step_fn is None:
        step_fn, facts = _first_step(stage, state, batch, key)
      try:
        state, m = step_fn(state, batch, key, stage.frozen)
      except (TypeError, ValueError):
        if step_fn is stage.step_fn:
          raise
        # the compiled step refuses inputs placed otherwise than it was compiled for (checked
        # before anything runs or is donated); the jitted step places them itself
        step_fn = stage.step_fn
        state, m = step_fn(state, batch, key, stage.frozen)
      done = step + 1
      if tracing and done == traced[1]:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        tracing = False
      # A step that skipped its update flags the quantity (`nonfinite_<name>`); the flags are
      # merged on device since the last check (no host sync), so no skip goes unreported.
      step_flags = {k: v for k, v in m.items() if k.startswith("nonfinite_")}
      flags = step_flags if flags is None else _merge_flags(flags, step_flags)
      log_now = done % log_every == 0 or done == steps
      evaluated = stage.evaluate is not None and (done % eval_every == 0 or done == steps)
      synced = log_now or evaluated or ckpt.should_save(done) or ckpt.reached_preemption(done)
      if synced:
        m, since = jax.device_get((m, flags))
        flags = None
        t_synced = time.perf_counter()
        clock.window(done - window_from, t_synced - window_start, first=window_from == start)
        check_finite({**m, **since}, done, ckpt.last_requested)  # before anything non-finite is saved
      if log_now:
        now = time.perf_counter()
        rate = (done - n_last) / max(now - t_last, 1e-9)
        t_last, n_last = now, done
        m.update(steps_per_s=rate, clips_per_s=rate * stage.clips_per_step)
        if stage.tokens_per_step:
          m["tokens_per_s"] = rate * stage.tokens_per_step
        m.update(step_timing.throughput(facts, rate, device_kind, devices))
        writer.write(done, m)
        bar.set_postfix({"steps/s": f"{rate:.3g}", **{k: f"{float(v):.4g}" for k, v in list(m.items())[:3]}})
      if evaluated:
        writer.write(done, stage.evaluate(state, done))
      saved = ckpt.save(done, state, data_iterator=stage.data_iterator)
      if synced:
        window_start, window_from = time.perf_counter(), done
        clock.extra(step_timing.kind_of(evaluated, bool(saved), log_now), window_start - t_synced)
      if ckpt.reached_preemption(done):
        if not saved:  # the policy saves a preemption step already; a second save of it would fail
          ckpt.save(done, state, force=True, data_iterator=stage.data_iterator)
        preempted = done if done < steps or not final else 0
        break
    if done and ckpt.latest_step() != done:
      ckpt.save(done, state, force=True, data_iterator=stage.data_iterator)
  finally:  # pending async saves finish even when a step raised
    if tracing:
      jax.profiler.stop_trace()
    try:
      ckpt.close()  # may raise a failed background save
    finally:
      writer.close()
      if distributed.is_main() and clock.data_wait:
        storage.write_json(os.path.join(workdir, "step_times.json"), {**clock.summary(), "compiled": facts})
  if preempted:
    raise Preempted(f"stopped at step {preempted} on a preemption notice (saved in {workdir}); "
                    "rerun the same command to resume")
  return state
