"""LLaMA building blocks in Flax NNX: RMSNorm, llama3 RoPE, cached attention, SwiGLU MLP.

Every parameter carries logical axis names ("embed", "heads", "kv_heads", "mlp", "vocab");
the mesh's rules table maps them to mesh axes. Activations are constrained by name.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import mesh as mesh_lib

_NEG = float(np.finfo(np.float32).min)


def dense_init(axes, std=0.02):
  return nnx.with_partitioning(nnx.initializers.normal(std), axes)


class RMSNorm(nnx.Module):
  """w * x / sqrt(mean(x^2) + eps), computed in float32 (HF LlamaRMSNorm)."""

  def __init__(self, dim: int, eps: float):
    self.eps = eps
    self.weight = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("embed",))

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    var = jnp.mean(x32 * x32, axis=-1, keepdims=True)
    y = (x32 * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
    return self.weight[...].astype(x.dtype) * y


def llama3_inv_freq(head_dim: int, theta: float, scaling) -> np.ndarray:
  """Inverse RoPE frequencies (head_dim/2,) float32, with HF's llama3 rescaling."""
  exps = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
  inv = (np.float32(1.0) / np.power(np.float32(theta), exps)).astype(np.float32)
  if scaling is None or scaling.get("rope_type", "default") == "default":
    return inv
  if scaling["rope_type"] != "llama3":
    raise ValueError(f"rope_scaling.rope_type={scaling['rope_type']!r} is not supported")
  factor = np.float32(scaling["factor"])
  low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
  old = scaling["original_max_position_embeddings"]
  low_wavelen, high_wavelen = old / low, old / high
  wavelen = (np.float32(2 * math.pi) / inv).astype(np.float32)
  inv_l = np.where(wavelen > low_wavelen, inv / factor, inv).astype(np.float32)
  smooth = ((np.float32(old) / wavelen - np.float32(low)) / np.float32(high - low)).astype(
    np.float32
  )
  smoothed = ((1 - smooth) * inv_l / factor + smooth * inv_l).astype(np.float32)
  medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return np.where(medium, smoothed, inv_l).astype(np.float32)


def apply_rope(x_bthk, pos_bt, inv_freq):
  """Half-split (NeoX) rotary embedding; angles are float32(pos) * inv_freq in float32."""
  ang = pos_bt.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
  emb = jnp.concatenate([ang, ang], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(emb).astype(x_bthk.dtype), jnp.sin(emb).astype(x_bthk.dtype)
  half = x_bthk.shape[-1] // 2
  rot = jnp.concatenate([-x_bthk[..., half:], x_bthk[..., :half]], axis=-1)
  return x_bthk * cos + rot * sin


def attend(q_bqhk, k_bshk, v_bshk, key_ok_bs, key_seq_s, query_seq_bq, query_chunk=512):
  """Softmax attention of Q queries over S cache slots.

  A query sees slot s iff `key_ok_bs[b, s]` and `key_seq_s[s] <= query_seq_bq[b, q]` (the
  slot's sequence index, so causality survives a ring-buffer cache). Masked scores use the
  float32 minimum rather than -inf, so a row without a visible key stays finite. Long query
  blocks run in chunks to bound the (B, H, Q, S) score memory.
  """
  b, q, h, d = q_bqhk.shape
  groups = h // k_bshk.shape[2]
  if groups > 1:
    k_bshk = jnp.repeat(k_bshk, groups, axis=2)
    v_bshk = jnp.repeat(v_bshk, groups, axis=2)
  scale = 1.0 / math.sqrt(d)

  def one(qc, qseq):
    keep = key_ok_bs[:, None, :] & (key_seq_s[None, None, :] <= qseq[:, :, None])
    s = jnp.einsum("bqhd,bshd->bhqs", qc * scale, k_bshk)
    s = jnp.where(keep[:, None], s.astype(jnp.float32), _NEG)
    p = jax.nn.softmax(s, axis=-1).astype(v_bshk.dtype)
    return jnp.einsum("bhqs,bshd->bqhd", p, v_bshk)

  if q <= query_chunk:
    return one(q_bqhk, query_seq_bq)
  n = -(-q // query_chunk)
  pad = n * query_chunk - q
  qs = jnp.pad(q_bqhk, ((0, 0), (0, pad), (0, 0), (0, 0)))
  seqs = jnp.pad(query_seq_bq, ((0, 0), (0, pad)))
  qs = qs.reshape(b, n, query_chunk, h, d).swapaxes(0, 1)
  seqs = seqs.reshape(b, n, query_chunk).swapaxes(0, 1)
  out = jax.lax.map(lambda a: one(*a), (qs, seqs))
  return out.swapaxes(0, 1).reshape(b, n * query_chunk, h, d)[:, :q]


class Attention(nnx.Module):
  def __init__(self, cfg, rngs: nnx.Rngs):
    d = cfg.hidden_size
    self.num_heads, self.num_kv, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    lin = lambda i, o, axes: nnx.Linear(
      i, o, use_bias=False, kernel_init=dense_init(axes), rngs=rngs
    )
    self.q_proj = lin(d, self.num_heads * self.head_dim, ("embed", "heads"))
    self.k_proj = lin(d, self.num_kv * self.head_dim, ("embed", "kv_heads"))
    self.v_proj = lin(d, self.num_kv * self.head_dim, ("embed", "kv_heads"))
    self.o_proj = lin(self.num_heads * self.head_dim, d, ("heads", "embed"))

  def __call__(self, x_btd, pos_bt, cache, slots_bt, vis, inv_freq):
    """Writes this block's K/V at `slots_bt` of the cache, then attends over the cache.

    cache: (k, v), each (B, S, num_kv, head_dim), keys stored after RoPE.
    vis: (key_ok_bs, key_seq_s, query_seq_bt), see `attend`; key_ok is the state after
      this block's write.
    """
    b, t, _ = x_btd.shape
    q = self.q_proj(x_btd).reshape(b, t, self.num_heads, self.head_dim)
    k = self.k_proj(x_btd).reshape(b, t, self.num_kv, self.head_dim)
    v = self.v_proj(x_btd).reshape(b, t, self.num_kv, self.head_dim)
    q, k = apply_rope(q, pos_bt, inv_freq), apply_rope(k, pos_bt, inv_freq)
    ck, cv = cache
    bi = jnp.arange(b)[:, None]
    ck = ck.at[bi, slots_bt].set(k.astype(ck.dtype), unique_indices=True)
    cv = cv.at[bi, slots_bt].set(v.astype(cv.dtype), unique_indices=True)
    ck = mesh_lib.constrain(ck, ("batch", None, None, None))
    cv = mesh_lib.constrain(cv, ("batch", None, None, None))
    o = attend(q, ck, cv, *vis)
    return self.o_proj(o.reshape(b, t, -1)), (ck, cv)


class MLP(nnx.Module):
  def __init__(self, cfg, rngs: nnx.Rngs):
    d, f = cfg.hidden_size, cfg.intermediate_size
    lin = lambda i, o, axes: nnx.Linear(
      i, o, use_bias=False, kernel_init=dense_init(axes), rngs=rngs
    )
    self.gate_proj = lin(d, f, ("embed", "mlp"))
    self.up_proj = lin(d, f, ("embed", "mlp"))
    self.down_proj = lin(f, d, ("mlp", "embed"))

  def __call__(self, x):
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
  def __init__(self, cfg, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.self_attn = Attention(cfg, rngs)
    self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.mlp = MLP(cfg, rngs)

  def __call__(self, h, pos, cache, slots, vis, inv_freq):
    a, cache = self.self_attn(self.input_layernorm(h), pos, cache, slots, vis, inv_freq)
    h = h + a
    h = h + self.mlp(self.post_attention_layernorm(h))
    return mesh_lib.constrain(h, ("batch", None, "embed")), cache
