"""What a training step costs, measured without syncing the host on every step.

Steps are dispatched asynchronously, so a host-side time per step is only meaningful in
steady state, where the dispatch queue is full and each loop iteration waits for the device:
then the iteration time is the step time. Iterations are timed by kind: `step` (a plain one),
`log` (metrics fetched), `checkpoint` (state saved), `eval` (a held-out evaluation ran), and
`first` (includes compilation); the host's wait for the next batch is timed apart. The
summary (median, p90, max per kind; log and checkpoint steps as multiples of the median
plain step) goes to <workdir>/step_times.json.
"""

from __future__ import annotations

import numpy as np

KINDS = ("first", "step", "log", "checkpoint", "eval")
# Dense bf16 peak TFLOP/s per chip, for MFU (device_kind as jax reports it).
PEAK_TFLOPS = {"TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5": 459.0, "TPU v5p": 459.0,
               "TPU v6 lite": 918.0, "TPU v6e": 918.0, "NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H200": 989.0,
               "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA A100-SXM4-40GB": 312.0}


class StepClock:
  """Iteration times by kind, and the host's waits for data."""

  def __init__(self):
    self.times = {k: [] for k in KINDS}
    self.data_wait = []

  def record(self, kind: str, seconds: float, data_wait: float) -> None:
    if kind not in self.times:
      raise ValueError(f"step kind {kind!r} is not one of {KINDS}")
    self.times[kind].append(float(seconds))
    self.data_wait.append(float(data_wait))

  def summary(self) -> dict:
    out = {}
    for kind, ts in self.times.items():
      if ts:
        a = np.asarray(ts)
        out[kind] = {"count": int(a.size), "median_s": float(np.median(a)), "p90_s": float(np.quantile(a, 0.9)),
                     "max_s": float(a.max())}
    plain = out.get("step", {}).get("median_s")
    if plain:
      for kind in ("log", "checkpoint", "eval"):
        if kind in out:
          out[kind]["median_over_step"] = out[kind]["median_s"] / plain
    if self.data_wait:
      total = sum(sum(ts) for ts in self.times.values())
      out["data_wait"] = {"median_s": float(np.median(self.data_wait)),
                          "fraction_of_time": float(sum(self.data_wait) / max(total, 1e-12))}
    return out


def kind_of(first: bool, evaluated: bool, saved: bool, logged: bool) -> str:
  """One kind per iteration, the costliest thing it did."""
  return "first" if first else "eval" if evaluated else "checkpoint" if saved else "log" if logged else "step"


def compiled_facts(compiled) -> dict:
  """Memory (GiB: arguments, temporaries, outputs) and FLOPs per step of a compiled step,
  from XLA's own analyses; {} where the backend gives none."""
  facts = {}
  try:
    mem = compiled.memory_analysis()
    facts.update(argument_gib=mem.argument_size_in_bytes / 2**30, temp_gib=mem.temp_size_in_bytes / 2**30,
                 output_gib=mem.output_size_in_bytes / 2**30)
  except Exception:
    pass
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and "flops" in cost:
      facts["flops_per_step"] = float(cost["flops"])
  except Exception:
    pass
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
