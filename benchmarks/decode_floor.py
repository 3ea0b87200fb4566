"""The hardware floor of generating gazes, for benchmarks/gaze_speed.py: what this machine can
stream and multiply (probes measured in the same run) and what one generate call must do
(counted from the model's config and the budgets).

Work model, per clip of T frames with budgets n_t and K tokens per step (s_t = ceil(n_t / K)
steps): frame t feeds its P vision tokens after the last step of frame t - 1 (its real gazes,
fed only now), then s_t - 1 decode steps of K tokens (its own last step waits for the next
prefill). A fed token costs the decoder's projections and MLP and attends over the keys fed
before it (all visible); in the last layer only the block's last token is queried, then the
heads run once. Each fed block reads the decoder weights once (per batch) and every layer's
keys and values of the keys before it (per clip). The vision encoder's FLOPs come from XLA's
cost analysis of its compiled call. Not counted: sampling, norms and re-reading activations.
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
  d, v = cfg.decoder, cfg.num_vision_tokens_each_frame
  p = (cfg.input_img_size // cfg.vision.kernel_size) ** 2
  k, layers = d.num_multi_token_pred, d.num_layers
  qo = 2 * d.hidden_size * d.num_heads * d.head_dim  # q and o projections (weights)
  kv = 2 * d.hidden_size * d.num_kv_heads * d.head_dim  # k and v projections
  mlp = 3 * d.hidden_size * d.intermediate_size
  heads = d.hidden_size * k * (v + 1) + d.hidden_size * k  # lm_head and task-loss head
  attn = 4 * d.num_heads * d.head_dim  # FLOPs per (query, visible key) in one layer
  kv_bytes = 2 * layers * d.num_kv_heads * d.head_dim * 4  # every layer's k and v of one key
  weights = 4 * (layers * (qo + kv + mlp) + heads)

  def block(fed: int, before: int) -> float:
    """Feeding `fed` tokens after `before` visible keys; the last layer runs only the last
    token's query, output and MLP (nobody reads the others), then the heads."""
    full = fed * 2 * (qo + kv + mlp) + attn * (fed * before + fed * (fed + 1) / 2)
    last = fed * 2 * kv + 2 * (qo + mlp) + attn * (before + fed)
    return (layers - 1) * full + last + 2 * heads

  flops = reads = blocks = 0.0
  visible = pending = 0  # keys fed so far; the previous frame's last step, fed at this prefill
  for n in (int(b) for b in budgets):
    steps = -(-n // k)
    for fed in [pending + p] + [k] * (steps - 1):
      flops += block(fed, visible)
      reads += kv_bytes * visible
      blocks += 1
      visible += fed
    pending = n - (steps - 1) * k
  return {"flops": batch * flops, "bytes": batch * reads + blocks * weights}


def floor_seconds(work: dict, bandwidth: float, rate: float) -> dict:
  """The roofline floor of `work` (flops, bytes): the larger of its read and compute times."""
  read, compute = work["bytes"] / bandwidth, work["flops"] / rate
  return {"read_s": read, "compute_s": compute, "floor_s": max(read, compute)}


def probes() -> dict:
  """This run's read bandwidth (GB/s) and matmul rate (GFLOP/s)."""
  return {"read_gb_s": read_bandwidth() / 1e9, "matmul_gflop_s": matmul_rate() / 1e9}


def clip_floor(cfg, budgets, batch: int, probe: dict, encoder_flops: float) -> dict:
  """Floor of one generate call of `batch` clips with per-frame `budgets`, in seconds;
  `encoder_flops`: `vision_flops` of one clip of that length (the same for every row)."""
  work = decoder_work(cfg, budgets, batch)
  work["flops"] += batch * encoder_flops
  out = floor_seconds(work, probe["read_gb_s"] * 1e9, probe["matmul_gflop_s"] * 1e9)
  return {**out, "gflop": work["flops"] / 1e9, "gbytes": work["bytes"] / 1e9}


if __name__ == "__main__":
  print(probes())
