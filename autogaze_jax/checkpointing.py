"""Orbax checkpoints of gaze-model parameters (the only module that imports orbax).

Layout of a checkpoint directory:
  autogaze_jax.json   the model config (ml_collections, JSON)
  params/             Orbax StandardCheckpointer tree of the nnx.Param state

`autogaze-jax ckpt info DIR`: the latest step of a training workdir (or a saved model) and
a SHA-256 digest of its model parameters, so two runs can be checked to end in the same
place. The digest covers every parameter's path, dtype, shape and bytes, in path order.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from autogaze_jax import storage

CONFIG_FILE = "autogaze_jax.json"
PARAMS_DIR = "params"


def is_checkpoint(path: str) -> bool:
  return storage.exists(os.path.join(path, CONFIG_FILE)) and storage.is_dir(os.path.join(path, PARAMS_DIR))


def save(path: str, params_state, cfg) -> None:
  """Writes params (a pytree of arrays) and the config; refuses to overwrite."""
  path = storage.path(path)
  if (path / PARAMS_DIR).exists():
    raise FileExistsError(f"checkpoint: {path} already holds a checkpoint; choose another --out")
  path.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path / PARAMS_DIR, params_state)
    ckptr.wait_until_finished()
  if jax.process_index() == 0:
    (path / CONFIG_FILE).write_text(cfg.to_json(indent=2))


def load_config(path: str) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(storage.read_json(os.path.join(path, CONFIG_FILE)))
  cfg.scales = tuple(cfg.scales)
  return cfg


def restore(path: str, abstract_state):
  """Restores into the shapes/shardings of `abstract_state` (jax.ShapeDtypeStruct leaves)."""
  path = storage.path(path)
  with ocp.StandardCheckpointer() as ckptr:
    try:
      return ckptr.restore(path / PARAMS_DIR, abstract_state)
    except (ValueError, KeyError) as e:
      raise ValueError(f"checkpoint: {path} does not match the model config: {e}") from None


def read_numpy(directory: str):
  """Any Orbax pytree directory (a model's params/, a training step's state/) as numpy
  arrays on the host, whatever mesh wrote it."""
  with ocp.PyTreeCheckpointer() as ckptr:
    meta = ckptr.metadata(directory).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
    return ckptr.restore(directory, restore_args=as_numpy)


def abstract_like(tree):
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
  )


def _rescaled_data_state(data_dir: str) -> dict:
  """The iterator state for this process from states saved by another process count.

  Each process reads the global batch's slice [process_index::process_count] of the same
  shuffled order, so after n steps every process is at batch index n and together they have
  consumed exactly global batches 0..n-1, whatever the count. A state of that form
  ({"next_index": n}, equal on every process) therefore maps to any count. Worker-process
  states (data.num_workers > 0) carry per-worker positions that do not map; they are refused.
  """
  files = sorted(storage.path(data_dir).glob("process_*.json"))
  names = [f.name for f in files]
  states = [json.loads(f.read_text()) for f in files]
  if not states:
    raise ValueError(f"checkpoint: {data_dir} holds no data-iterator state")
  if any(set(st) != {"next_index"} or st != states[0] for st in states):
    raise ValueError(
      f"checkpoint: the data-iterator state in {data_dir} was saved by {len(states)} process(es) "
      f"({names[0]}, ...) with per-worker positions, which do not map to {jax.process_count()} "
      "process(es); resume on the saving topology, or with data.num_workers=0 on both")
  return dict(states[0])


class _IteratorSnapshot:
  """A data iterator's state taken when `save` is called (an async save writes it later,
  when the iterator has moved on)."""

  def __init__(self, iterator):
    self.state = json.dumps(iterator.get_state()).encode()

  def get_state(self) -> bytes:
    return self.state


class TrainCheckpoints:
  """Orbax CheckpointManager for training state (item `state`) and, when given, the Grain
  data iterator's position (item `data`, one JSON file per process): keep-last-N, interval
  saves, preemption saves, resume from the latest step. All processes must call save/restore.

  With `async_save` (the default) in a single-process run, a save costs the training loop one
  device-side copy of the state and a snapshot of the iterator's position: Orbax's own save,
  whose blocking part is per-leaf Python work (about 0.1-0.9 s for a few hundred leaves on a
  loaded 2-core CPU), runs on a background thread, one save at a time, while the loop
  dispatches the next steps. The copy is what makes this safe against the next step donating
  the state's buffers; it costs one extra state's memory while a save is in flight. A failed
  background save is raised by the first should_save, save, latest_step, restore or close
  after it failed. Without `async_save`, everything happens in `save` (ckpt info, tests).
  """

  def __init__(self, workdir: str, interval: int, keep: int = 3, async_save: bool = True):
    policies = ocp.checkpoint_managers
    self.mngr = ocp.CheckpointManager(
      storage.path(workdir) / "ckpt",
      options=ocp.CheckpointManagerOptions(
        enable_async_checkpointing=async_save,
        save_decision_policy=policies.AnySavePolicy([
          policies.FixedIntervalPolicy(interval), policies.PreemptionCheckpointingPolicy(),
        ]),
        preservation_policy=policies.LatestN(keep),
      ),
    )
    # One process only: with several, Orbax's save runs barriers that are device collectives
    # (multihost_utils.sync_global_devices), which must be issued in program order from the
    # thread that runs the steps, and under jax.distributed even one process has a preemption
    # sync point that a save on another thread would move; there the save stays on the caller
    # (Orbax's own async save).
    background = async_save and jax.process_count() == 1 and not jax.distributed.is_initialized()
    self._saver = concurrent.futures.ThreadPoolExecutor(1, "checkpoint") if background else None
    self._pending = None
    self.last_requested = self.mngr.latest_step()

  def wait(self) -> None:
    """Blocks until the background save (if any) has been handed to Orbax; re-raises its error."""
    pending, self._pending = self._pending, None
    if pending is not None:
      pending.result()

  def latest_step(self):
    self.wait()
    return self.mngr.latest_step()

  def warm(self, state) -> None:
    """Compiles the device-side copy for `state`'s structure now (before the timed steps),
    so the first checkpoint step does not pay for it."""
    if self._saver is not None:
      jax.block_until_ready(_copy_on_device(state))

  def state_dir(self, step: int) -> str:
    return os.path.join(str(self.mngr.directory), str(step), "state")

  def save(self, step: int, state, force: bool = False, data_iterator=None) -> bool:
    """Saves at interval and preemption steps (or when `force`); True when it saved or handed
    the save to the background thread."""
    if not force and not self.mngr.should_save(step):
      return False
    snapshot = None if data_iterator is None else _IteratorSnapshot(data_iterator)
    if self._saver is None:
      saved = self._save_now(step, state, snapshot, force)
    else:
      self.wait()
      # force: the decision is made here; the worker must not re-ask the preemption sync point
      self._pending = self._saver.submit(self._save_now, step, _copy_on_device(state), snapshot, True)
      saved = True
    if saved:
      self.last_requested = step
    return saved

  def _save_now(self, step: int, state, snapshot, force: bool) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if snapshot is not None:
      items["data"] = grain.checkpoint.CheckpointSave(snapshot)
    return self.mngr.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state, data_iterator=None):
    """The state; `data_iterator` (if given) is moved to where it was at the save, also when
    the checkpoint was written by another number of processes (see `_rescaled_data_state`)."""
    self.wait()
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      if "data" not in self.mngr.item_metadata(step):
        raise ValueError(f"checkpoint: step {step} in {self.mngr.directory} has no data-iterator state")
      data_dir = os.path.join(str(self.mngr.directory), str(step), "data")
      own = os.path.join(data_dir, f"process_{jax.process_index()}-of-{jax.process_count()}.json")
      if storage.exists(own):
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      else:
        data_iterator.set_state(_rescaled_data_state(data_dir))
    try:
      return self.mngr.restore(step, args=ocp.args.Composite(**items))["state"]
    except (ValueError, KeyError) as e:
      raise ValueError(f"checkpoint: step {step} in {self.mngr.directory} does not match the config: {e}") from None

  def should_save(self, step: int) -> bool:
    if self._pending is not None and self._pending.done():
      self.wait()  # a failed background save surfaces here, at the next step
    return self.mngr.should_save(step)

  def reached_preemption(self, step: int) -> bool:
    return self.mngr.reached_preemption(step)

  def close(self) -> None:
    try:
      self.wait()
    finally:
      if self._saver is not None:
        self._saver.shutdown(wait=True)
      self.mngr.wait_until_finished()
      self.mngr.close()


def _copy_leaf(x):
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(jnp.copy(jax.random.key_data(x)), impl=jax.random.key_impl(x))
  return jnp.copy(x)


@jax.jit
def _copy_on_device(tree):
  """A copy of every array (new buffers, same devices and shardings), dispatched asynchronously."""
  return jax.tree.map(_copy_leaf, tree)


def digest(tree) -> str:
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def info(path: str) -> dict:
  """{"kind", "step", "num_params", "sha256"} for a workdir holding ckpt/ or a model checkpoint."""
  if is_checkpoint(path):
    params = read_numpy(storage.path(path) / PARAMS_DIR)
    kind, step = "model", None
  elif storage.is_dir(os.path.join(path, "ckpt")):
    ckpt = TrainCheckpoints(path, interval=1, async_save=False)
    step = ckpt.latest_step()
    if step is None:
      raise ValueError(f"ckpt info: {path}/ckpt holds no finished checkpoint")
    state = read_numpy(ckpt.state_dir(step))
    ckpt.close()
    if "model" not in state:
      raise ValueError(f"ckpt info: step {step} in {path} has no 'model' parameters")
    kind, params = "training", state["model"]
  else:
    raise ValueError(f"ckpt info: {path} is neither a training workdir (with ckpt/) nor a saved model")
  return {"kind": kind, "step": step, "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
          "sha256": digest(params)}
