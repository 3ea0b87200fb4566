"""Multi-process JAX for the training and gazing entry points: the `--multihost` flags and
`jax.distributed.initialize`.

On Cloud TPU VMs, GKE (xpk) and SLURM, `--multihost` alone is enough: JAX discovers the
coordinator, the process count and this process's index from the environment. For several
processes on one machine (debugging, tests) give them yourself:

  autogaze-jax train --config configs/ntp.py:tiny --workdir runs/x --multihost \
      --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 0 --cpu-devices 4

Every process then runs the same program on its part of the global batch; only process 0
writes logs and pictures, all processes take part in checkpoint saves and restores.
`initialize` must run before anything touches a JAX backend.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class Settings:
  multihost: bool = False
  coordinator: str | None = None  # "host:port"; None: discovered (TPU VM, GKE, SLURM)
  num_processes: int | None = None
  process_id: int | None = None
  cpu_devices: int | None = None  # fake CPU devices in this process (local runs)


def add_flags(parser: argparse.ArgumentParser) -> None:
  """Adds the multi-process flags to an entry point's parser."""
  g = parser.add_argument_group("multi-process (see autogaze_jax/distributed.py)")
  g.add_argument("--multihost", action="store_true",
                 help="call jax.distributed.initialize (auto-detected on TPU VMs, GKE and SLURM)")
  g.add_argument("--coordinator", help="HOST:PORT of process 0 (local multi-process runs)")
  g.add_argument("--num-processes", type=int, help="number of processes (with --coordinator)")
  g.add_argument("--process-id", type=int, help="this process's index (with --coordinator)")
  g.add_argument("--cpu-devices", type=int, help="fake CPU devices for this process (JAX_PLATFORMS=cpu)")


def settings_from_args(args) -> Settings:
  return Settings(
    multihost=bool(getattr(args, "multihost", False)), coordinator=getattr(args, "coordinator", None),
    num_processes=getattr(args, "num_processes", None), process_id=getattr(args, "process_id", None),
    cpu_devices=getattr(args, "cpu_devices", None),
  )


def validate(s: Settings) -> None:
  explicit = (s.coordinator, s.num_processes, s.process_id)
  if not s.multihost and any(x is not None for x in explicit):
    raise ValueError("--coordinator/--num-processes/--process-id need --multihost")
  if any(x is not None for x in explicit) and any(x is None for x in explicit):
    raise ValueError("--coordinator, --num-processes and --process-id go together (or none: auto-detect)")
  if s.coordinator is not None:
    host, _, port = s.coordinator.rpartition(":")
    if not host or not port.isdigit():
      raise ValueError(f"--coordinator: {s.coordinator!r} is not HOST:PORT")
    if s.num_processes < 1:
      raise ValueError(f"--num-processes must be >= 1, got {s.num_processes}")
    if not 0 <= s.process_id < s.num_processes:
      raise ValueError(f"--process-id must be in [0, {s.num_processes}), got {s.process_id}")
  if s.cpu_devices is not None and s.cpu_devices < 1:
    raise ValueError(f"--cpu-devices must be >= 1, got {s.cpu_devices}")


def initialize(s: Settings) -> None:
  """Sets the CPU device count (if asked) and joins the process group (with --multihost)."""
  validate(s)
  if s.cpu_devices is not None:
    jax.config.update("jax_num_cpu_devices", s.cpu_devices)
  if not s.multihost:
    return
  # CPU collectives across processes go through gloo (the default in jax 0.12; set so that
  # an environment default cannot silently select the single-process implementation).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=s.coordinator, num_processes=s.num_processes,
                             process_id=s.process_id)


def is_main() -> bool:
  """True in the process that writes logs, pictures and reports."""
  return jax.process_index() == 0
