"""The training loop shared by every stage: sharded jitted steps, deterministic batches,
Orbax checkpoints with automatic resume and preemption saves, JSONL/TensorBoard metrics,
periodic evaluation, and a progress bar."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from autogaze_jax import checkpointing, metrics


@dataclasses.dataclass
class Stage:
  """What a training stage supplies to the loop."""

  step_fn: Callable  # jitted (state, batch, key) -> (state, metrics); donates state
  host_batch: Callable  # step -> numpy pytree (this process's part of the global batch)
  put_batch: Callable  # numpy pytree -> global jax arrays
  evaluate: Callable | None = None  # (state, step) -> dict of scalars
  clips_per_step: int = 1
  data_iterator: object = None  # a Grain iterator behind host_batch: checkpointed with the state


def _check_finite(metrics: dict, step: int, last_saved) -> None:
  bad = {k: float(np.asarray(v).ravel()[0]) for k, v in metrics.items() if not np.all(np.isfinite(v))}
  if bad:
    raise FloatingPointError(
      f"step {step}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} (metrics are checked on "
      f"log and checkpoint steps); stopping. The last checkpoint (step {last_saved}) is intact.")


def run(stage: Stage, state, *, workdir: str, steps: int, seed: int, log_every: int,
        eval_every: int, checkpoint_every: int, keep: int = 3, progress: bool = True):
  """Trains from the latest checkpoint in `workdir` (or from `state`) up to `steps`."""
  ckpt = checkpointing.TrainCheckpoints(workdir, checkpoint_every, keep)
  writer = metrics.Writer(workdir)
  start = ckpt.latest_step() or 0
  if start:
    state = ckpt.restore(start, checkpointing.abstract_like(state), stage.data_iterator)
    if jax.process_index() == 0:
      print(f"resuming from step {start} ({workdir})", file=sys.stderr, flush=True)
  root = jax.random.key(seed)
  if start == 0 and stage.evaluate is not None:
    writer.write(0, stage.evaluate(state, 0))
  t_last, n_last = time.perf_counter(), start
  bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress or jax.process_index() != 0,
             desc="train", dynamic_ncols=True)
  try:
    done = start
    for step in bar:
      batch = stage.put_batch(stage.host_batch(step))
      state, m = stage.step_fn(state, batch, jax.random.fold_in(root, step))
      done = step + 1
      log_now = done % log_every == 0 or done == steps
      if log_now or ckpt.should_save(done) or ckpt.reached_preemption(done):
        m = jax.device_get(m)
        _check_finite(m, done, ckpt.latest_step())  # before anything non-finite is saved
      if log_now:
        now = time.perf_counter()
        rate = (done - n_last) / max(now - t_last, 1e-9)
        t_last, n_last = now, done
        m.update(steps_per_s=rate, clips_per_s=rate * stage.clips_per_step)
        writer.write(done, m)
        bar.set_postfix({k: f"{float(v):.4g}" for k, v in list(m.items())[:3]})
      if stage.evaluate is not None and (done % eval_every == 0 or done == steps):
        writer.write(done, stage.evaluate(state, done))
      ckpt.save(done, state, data_iterator=stage.data_iterator)
      if ckpt.reached_preemption(done):
        ckpt.save(done, state, force=True, data_iterator=stage.data_iterator)
        break
    if done and ckpt.latest_step() != done:
      ckpt.save(done, state, force=True, data_iterator=stage.data_iterator)
  finally:  # pending async saves finish even when a step raised
    ckpt.close()
    writer.close()
  return state
