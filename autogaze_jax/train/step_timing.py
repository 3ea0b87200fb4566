"""What a training step costs, measured without syncing the host on every step.

Steps are dispatched asynchronously, so the time of one loop iteration says little: a plain
iteration may only queue work, and the next sync waits for everything queued. The loop syncs
only on log, checkpoint and evaluation steps; the time between two syncs (from the end of the
previous sync step's extra work to the end of this sync) divided by its steps is the step
time, and what a sync step then does on top (writing metrics, evaluating, saving) is its
overhead. The summary (<workdir>/step_times.json) has the step time over windows (median,
p90, max; the first window, which compiles, apart), each kind's overhead, the cost of a
log/checkpoint/eval step as a multiple of a plain step, and the host's wait for data.
"""

from __future__ import annotations

import contextlib

import numpy as np

KINDS = ("log", "checkpoint", "eval")
# Dense bf16 peak TFLOP/s per chip, for MFU (device_kind as jax reports it).
PEAK_TFLOPS = {"TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5": 459.0, "TPU v5p": 459.0,
               "TPU v6 lite": 918.0, "TPU v6e": 918.0, "NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0,
               "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA A100-SXM4-40GB": 312.0}


def _stats(xs) -> dict:
  a = np.asarray(xs, np.float64)
  return {"count": int(a.size), "median_s": float(np.median(a)), "p90_s": float(np.quantile(a, 0.9)),
          "max_s": float(a.max())}


class StepClock:
  """Per-step times of the windows between syncs, overheads of sync steps, data waits."""

  def __init__(self):
    self.first = None
    self.per_step = []
    self.overhead = {k: [] for k in KINDS}
    self.data_wait, self.total = [], 0.0

  def window(self, steps: int, seconds: float, first: bool = False) -> None:
    """`steps` steps took `seconds` up to a sync (`first`: the window that compiled)."""
    if steps <= 0:
      return
    self.total += seconds
    if first:
      self.first = {"steps": steps, "seconds": float(seconds)}
    else:
      self.per_step.append(seconds / steps)

  def extra(self, kind: str, seconds: float) -> None:
    """What a sync step of `kind` did after its sync."""
    if kind not in self.overhead:
      raise ValueError(f"step kind {kind!r} is not one of {KINDS}")
    self.overhead[kind].append(float(seconds))
    self.total += seconds

  def data(self, seconds: float) -> None:
    self.data_wait.append(float(seconds))

  def summary(self) -> dict:
    out = {}
    if self.first:
      out["first_window"] = self.first
    if self.per_step:
      out["step"] = _stats(self.per_step)
    plain = out.get("step", {}).get("median_s")
    for kind, xs in self.overhead.items():
      if xs:
        out[kind] = {"overhead": _stats(xs)}
        if plain:
          out[kind]["cost_over_step"] = (plain + out[kind]["overhead"]["median_s"]) / plain
    if self.data_wait:
      out["data_wait"] = {"median_s": float(np.median(self.data_wait)),
                          "fraction_of_time": float(sum(self.data_wait) / max(self.total, 1e-12))}
    return out


def kind_of(evaluated: bool, saved: bool, logged: bool) -> str:
  """One kind per sync step, the costliest thing it did."""
  return "eval" if evaluated else "checkpoint" if saved else "log"


def compiled_facts(compiled) -> dict:
  """Memory (GiB: arguments, temporaries, outputs) and FLOPs per step of a compiled step,
  from XLA's own analyses; {} where the backend gives none."""
  facts = {}
  # backends without an analysis raise one of these (or return None); the run goes on without it
  with contextlib.suppress(NotImplementedError, AttributeError, RuntimeError, TypeError):
    mem = compiled.memory_analysis()
    facts.update(argument_gib=mem.argument_size_in_bytes / 2**30, temp_gib=mem.temp_size_in_bytes / 2**30,
                 output_gib=mem.output_size_in_bytes / 2**30)
  with contextlib.suppress(NotImplementedError, AttributeError, RuntimeError, TypeError):
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and "flops" in cost:
      facts["flops_per_step"] = float(cost["flops"])
  return facts


def throughput(facts: dict, steps_per_s: float, device_kind: str, devices: int) -> dict:
  """Achieved TFLOP/s (whole mesh) and, on a chip with a known peak, MFU."""
  if "flops_per_step" not in facts:
    return {}
  tflops = facts["flops_per_step"] * steps_per_s / 1e12
  out = {"tflops_per_s": tflops}
  peak = PEAK_TFLOPS.get(device_kind)
  if peak:
    out["mfu"] = tflops / (peak * devices)
  return out


def parse_profile(spec: str) -> tuple[int, int] | None:
  """'START:STOP' (steps, STOP > START >= 0) -> (start, stop); '' -> None."""
  if not spec:
    return None
  try:
    start, stop = (int(x) for x in spec.split(":"))
  except ValueError:
    raise ValueError(f"profile: {spec!r} is not START:STOP (two step numbers)") from None
  if not 0 <= start < stop:
    raise ValueError(f"profile: need 0 <= START < STOP, got {spec!r}")
  return start, stop
