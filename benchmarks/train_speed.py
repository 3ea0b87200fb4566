"""NTP and GRPO training-step speed on this machine: steps/s and clips/s, compile time apart.

  python benchmarks/train_speed.py                        # tiny + small configs, 1 and 8 CPU devices
  python benchmarks/train_speed.py --configs ntp.py:tiny --devices 1 --json out.json

Each (config, device count) runs in its own process (the CPU device count is fixed at start).
The steps are the real jitted, donated, sharded steps (built like launch/aot_compile.py builds
them); the state is the randomly initialised model, the batch is zeros of the real shapes
(shapes, not values, set the cost: every loop and mask in the steps has a static size).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = ("ntp.py:tiny", "grpo.py:tiny", "ntp.py:small", "grpo.py:small")


def _materialize(args, mesh):
  """Concrete arrays for the abstract step arguments: a real initialised state, zero batches."""
  import jax
  import jax.numpy as jnp

  def leaf(s):
    if jnp.issubdtype(s.dtype, jax.dtypes.prng_key):
      return jax.device_put(jax.random.key(0), s.sharding)
    return jax.jit(lambda: jnp.zeros(s.shape, s.dtype), out_shardings=s.sharding)()

  return jax.tree.map(leaf, args)


def measure(config: str, devices: int, steps: int, micro_batch: int = 0) -> dict:
  import jax

  jax.config.update("jax_num_cpu_devices", devices)
  from flax import nnx

  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.cli import aot, config_files
  from autogaze_jax.models.gaze import GazeModel
  from autogaze_jax.train import optim
  from autogaze_jax.train import state as state_lib

  cfg = config_files.load(os.path.join(ROOT, "configs", config))
  if cfg.stage not in ("ntp", "grpo"):
    raise ValueError(f"train_speed: {config} is a {cfg.stage!r} config; this benchmark times the gaze stages")
  cfg.batch_size = max(cfg.batch_size // devices, 1) * devices  # splits over the devices
  if "micro_batch_size" in cfg:  # NTP: gradient accumulation over micro-batches of this many clips
    cfg.micro_batch_size = micro_batch if micro_batch and cfg.batch_size % micro_batch == 0 else 0
  mesh = mesh_lib.make_mesh((-1, 1), devices=jax.devices()[:devices])
  with mesh_lib.use(mesh):
    step = aot.train_step(cfg, mesh)
    args = list(_materialize(step.args, mesh))
    # A real random initialisation for the trained state (zeros would be a degenerate policy).
    tx = optim.make(cfg.optimizer, cfg.steps)
    args[0] = state_lib.create(lambda: GazeModel(cfg.gaze, nnx.Rngs(0)), tx, mesh)[1]
    t0 = time.perf_counter()
    compiled = step.fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    state, rest = args[0], args[1:]
    state, m = compiled(state, *rest)  # first run (allocation) not timed
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
      state, m = compiled(state, *rest)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
  return {"config": config, "devices": devices, "batch": cfg.batch_size, "compile_s": round(compile_s, 1),
          "micro_batch": cfg.get("micro_batch_size", 0), "step_s": round(dt, 3), "steps_per_s": round(1 / dt, 3), "clips_per_s": round(cfg.batch_size / dt, 2)}


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="comma-separated configs/<file>:<variant>")
  p.add_argument("--devices", default="1,8", help="CPU device counts, comma-separated")
  p.add_argument("--steps", type=int, default=3, help="timed steps per row")
  p.add_argument("--micro-batch", type=int, default=0, help="NTP clips per accumulation step (0: the whole batch)")
  p.add_argument("--json", help="also write the rows here")
  p.add_argument("--one", help=argparse.SUPPRESS)  # internal: CONFIG@DEVICES, run in this process
  args = p.parse_args()
  if args.one:
    config, devices = args.one.rsplit("@", 1)
    print(json.dumps(measure(config, int(devices), args.steps, args.micro_batch)))
    return 0
  rows = []
  print("| config | CPU devices | global batch | compile s | s/step | steps/s | clips/s |")
  print("|---|---|---|---|---|---|---|")
  for config in args.configs.split(","):
    for devices in args.devices.split(","):
      env = dict(os.environ, JAX_PLATFORMS="cpu")
      out = subprocess.run([sys.executable, __file__, "--one", f"{config}@{devices}", "--steps", str(args.steps),
                            "--micro-batch", str(args.micro_batch)],
                           capture_output=True, text=True, env=env)
      if out.returncode:
        why = (out.stderr.strip().splitlines() or [f"killed (exit {out.returncode}; out of host memory?)"])[-1]
        print(f"| {config} | {devices} | failed: {why[:120]} |||||", flush=True)
        continue
      r = json.loads(out.stdout.strip().splitlines()[-1])
      rows.append(r)
      print(f"| {r['config']} | {r['devices']} | {r['batch']} | {r['compile_s']} | {r['step_s']} | "
            f"{r['steps_per_s']} | {r['clips_per_s']} |", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
