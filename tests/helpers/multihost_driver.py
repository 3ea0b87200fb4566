"""A few NTP steps of the tiny gaze model through the shared loop (Orbax checkpoints, resume,
process-0 metrics), on whatever processes and devices it is started with. tests/test_multihost.py
runs it as 2 processes x 4 CPU devices, as 1 process x 2 devices resuming that checkpoint, and
in-process on 8 devices as the reference.

  python tests/helpers/multihost_driver.py --workdir W --steps 3 --multihost \
      --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I --cpu-devices 4

Global batch `step` is a pure function of (seed, step); each process feeds its rows of it.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from autogaze_jax import distributed

BATCH, FRAMES, SIZE, V, SLOTS = 8, 2, 64, 20, 6
MESH = (-1, 2)  # (data, fsdp): the fsdp axis is used on every topology the tests run


def global_batch(seed: int, step: int) -> dict:
  """Clips (B, T, H, W, 3) uint8 and random labels of the tiny vocabulary (V=20, 6 slots)."""
  import numpy as np

  rng = np.random.default_rng((seed, step))
  lens = rng.integers(1, SLOTS + 1, (BATCH, FRAMES)).astype(np.int32)
  ids = np.argsort(rng.random((BATCH, FRAMES, V)), -1)[..., :SLOTS].astype(np.int32)
  ids = np.where(np.arange(SLOTS) < lens[..., None], ids, V).astype(np.int32)
  losses = np.sort(rng.uniform(0.3, 1.5, (BATCH, FRAMES, SLOTS)), -1)[..., ::-1].astype(np.float32)
  video = rng.integers(0, 256, (BATCH, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
  return {"video": video, "ids": ids, "lens": lens, "task_losses": np.ascontiguousarray(losses)}


def train(workdir: str, stops, seed: int = 0):
  """Trains to each step count in `stops` in turn (each call resumes from the workdir)."""
  import jax
  import ml_collections
  from flax import nnx

  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.models import gaze_config
  from autogaze_jax.models.gaze import GazeModel
  from autogaze_jax.train import loop, optim
  from autogaze_jax.train import state as state_lib
  from autogaze_jax.train.ntp import step as ntp_step

  mesh = mesh_lib.make_mesh(MESH)
  opt = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, schedule="constant"))
  graphdef, state, shardings = state_lib.create(lambda: GazeModel(gaze_config.tiny_config(), nnx.Rngs(seed)),
                                                optim.make(opt, 100), mesh)
  step_cfg = ml_collections.ConfigDict(dict(batch_size=BATCH, micro_batch_size=0,
                                            loss=dict(tlp_weight=1.0, optimize_task_loss_prediction=True)))
  step, batch_sh = ntp_step.make_step(graphdef, shardings, mesh, step_cfg)
  per = BATCH // jax.process_count()
  mine = slice(jax.process_index() * per, (jax.process_index() + 1) * per)

  def put(x):
    return {k: jax.make_array_from_process_local_data(batch_sh[k], v) for k, v in x.items()}

  stage = loop.Stage(step_fn=step, host_batch=lambda i: {k: v[mine] for k, v in global_batch(seed, i).items()},
                     put_batch=put, clips_per_step=BATCH)
  with mesh_lib.use(mesh):
    for steps in stops:
      state = loop.run(stage, state, workdir=workdir, steps=steps, seed=seed, log_every=1,
                       eval_every=10**9, checkpoint_every=10**9, progress=False)
  return state


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--steps", required=True, help="comma-separated step counts to train to in turn")
  distributed.add_flags(p)
  args = p.parse_args(argv)
  distributed.initialize(distributed.settings_from_args(args))
  import jax

  train(args.workdir, [int(s) for s in args.steps.split(",")])
  print(f"process {jax.process_index()}/{jax.process_count()}: {jax.device_count()} devices, done", flush=True)


if __name__ == "__main__":
  main()
