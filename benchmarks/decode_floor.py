"""The hardware floor of generating gazes, for benchmarks/gaze_speed.py: what this machine can
stream and multiply (probes measured in the same run) and what one generate call must do
(counted from the model's config and the budgets).

Work model, per clip of T frames with budgets n_t and K tokens per step (s_t = ceil(n_t / K)
steps): frame t feeds its P vision tokens and the re-fed last step of frame t - 1 (K tokens),
then s_t - 1 decode steps of K tokens (the frame's last step is fed at the next prefill). A fed
token costs the decoder's projections and MLP and attends over the visible history, which
holds P + n_u tokens of every earlier frame u; each fed block reads the decoder weights once
(per batch) and every layer's keys and values of that visible history (per clip). The vision
encoder's FLOPs come from XLA's cost analysis of its compiled call. Not counted: the heads' and
sampling's small work, and re-reading activations.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from flax import nnx


def _best(fn, *args, repeats: int = 5) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return min(times)


def read_bandwidth(megabytes: int = 256) -> float:
  """Bytes per second of a jitted sum over a float32 array far larger than the caches."""
  x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
  return x.nbytes / _best(jax.jit(jnp.sum), x)


def matmul_rate(n: int = 2048) -> float:
  """float32 FLOP per second of a jitted n x n x n matrix product."""
  a = jnp.ones((n, n), jnp.float32)
  return 2 * n**3 / _best(jax.jit(lambda x: x @ x), a)


def vision_flops(model, frames: int, size: int = 224) -> float:
  """FLOPs of encoding one clip (XLA cost analysis of the compiled encoder)."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, v: nnx.merge(graphdef, s).encode(v)[0])
  video = jax.ShapeDtypeStruct((1, frames, 3, size, size), jnp.float32)
  cost = fn.lower(state, video).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def decoder_work(cfg, budgets, batch: int) -> dict:
  """FLOPs and bytes (per generate call of `batch` clips) of the decoder, by the work model."""
  d = cfg.decoder
  p = (cfg.input_img_size // cfg.vision.kernel_size) ** 2
  k = d.num_multi_token_pred
  per_token = 2 * d.num_layers * (2 * d.hidden_size * d.num_heads * d.head_dim
                                  + 2 * d.hidden_size * d.num_kv_heads * d.head_dim
                                  + 3 * d.hidden_size * d.intermediate_size)
  attn = 4 * d.num_layers * d.num_heads * d.head_dim  # FLOPs per (query, visible key)
  kv_bytes = 2 * d.num_layers * d.num_kv_heads * d.head_dim * 4  # per visible key
  weights = 4 * (d.num_layers * (2 * d.hidden_size * (d.num_heads + d.num_kv_heads) * d.head_dim
                                 + 3 * d.hidden_size * d.intermediate_size)
                 + (d.hidden_size + 1) * k * (cfg.num_vision_tokens_each_frame + 1))
  flops = reads = blocks = 0.0
  history = 0
  for n in (int(b) for b in budgets):
    steps = -(-n // k)
    # prefill: K + P tokens, causal over themselves, after the history
    fed = k + p
    flops += fed * per_token + attn * (fed * history + fed * (fed + 1) / 2)
    reads += kv_bytes * history
    blocks += 1
    for s in range(1, steps):  # decode steps fed in-frame
      visible = history + fed + s * k
      flops += k * per_token + attn * k * visible
      reads += kv_bytes * (visible - k)
      blocks += 1
    history += p + n
  return {"flops": batch * flops, "bytes": batch * reads + blocks * weights}


def floor_seconds(work: dict, bandwidth: float, rate: float) -> dict:
  """The roofline floor of `work` (flops, bytes): the larger of its read and compute times."""
  read, compute = work["bytes"] / bandwidth, work["flops"] / rate
  return {"read_s": read, "compute_s": compute, "floor_s": max(read, compute)}


def probes() -> dict:
  """This run's read bandwidth (GB/s) and matmul rate (GFLOP/s)."""
  return {"read_gb_s": read_bandwidth() / 1e9, "matmul_gflop_s": matmul_rate() / 1e9}


def clip_floor(model, cfg, budgets, batch: int, probe: dict) -> dict:
  """Floor of one generate call of `batch` clips with per-frame `budgets`, in seconds."""
  work = decoder_work(cfg, budgets, batch)
  work["flops"] += batch * vision_flops(model, len(budgets), cfg.input_img_size)
  out = floor_seconds(work, probe["read_gb_s"] * 1e9, probe["matmul_gflop_s"] * 1e9)
  return {**out, "gflop": work["flops"] / 1e9, "gbytes": work["bytes"] / 1e9}


if __name__ == "__main__":
  print(probes())
