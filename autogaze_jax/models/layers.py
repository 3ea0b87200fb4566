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


PREFIX_CHUNKS = 8  # query chunks of a whole causal block (attend, no cache)


def _prefix_chunk(qc_bchd, qpos_c, k_bhsd, v_bhsd, ok_bs, scale):
  """Causal softmax attention of a chunk of queries over the keys before and at them."""
  qh = jnp.swapaxes(qc_bchd * scale, 1, 2)
  keep = ok_bs[:, None, :] & (jnp.arange(k_bhsd.shape[2])[None, :] <= qpos_c[:, None])[None]
  s = jnp.where(keep[:, None], jnp.einsum("bhqd,bhsd->bhqs", qh, k_bhsd).astype(jnp.float32), _NEG)
  p = jax.nn.softmax(s, axis=-1).astype(v_bhsd.dtype)
  return jnp.einsum("bhqs,bhsd->bqhd", p, v_bhsd)


KV_BLOCK = 512  # cache slots per block of the extent-bounded read (`_blocked_cache`)


def kv_cache(batch: int, num_kv: int, slots: int, head_dim: int, dtype=jnp.float32):
  """An empty KV cache of `slots` slots: keys (B, H_kv, head_dim, S), stored transposed so the
  decode step's scores q @ K are a plain product (XLA CPU runs the q @ K^T form over a
  (S, head_dim) panel about 2.5x slower, docs/results.md), and values (B, H_kv, S, head_dim)."""
  return (jnp.zeros((batch, num_kv, head_dim, slots), dtype), jnp.zeros((batch, num_kv, slots, head_dim), dtype))


def pad_kv_cache(cache, extra: int):
  """The cache with `extra` empty slots appended."""
  k, v = cache
  return (jnp.pad(k, ((0, 0), (0, 0), (0, 0), (0, extra))), jnp.pad(v, ((0, 0), (0, 0), (0, extra), (0, 0))))


def _blocked_cache(qh, s_new, new_v, cache_k, cache_v, cache_ok_bs, extent, rep):
  """Softmax over [cache[:extent] | block], reading the cache in KV_BLOCK-slot blocks with an
  online (running max) softmax and a trip count of ceil(extent / KV_BLOCK): the empty slots
  past `extent` are never touched. qh (B, H, Q, d) scaled queries; s_new (B, H, Q, T) the
  block's masked scores; cache_k (B, H_kv, d, S) and cache_v (B, H_kv, S, d) (`kv_cache`),
  each read block repeated to the query heads by `rep`. Returns (B, Q, H, d). Forward only (a
  dynamic trip count)."""
  size = cache_v.shape[2]
  m = s_new.max(-1)
  e = jnp.exp(s_new - m[..., None])
  acc = (m, e.sum(-1), jnp.einsum("bhqs,bhsd->bhqd", e.astype(new_v.dtype), new_v).astype(jnp.float32))

  def body(i, acc):
    m, l, o = acc
    lo = jnp.minimum(i * KV_BLOCK, size - KV_BLOCK)  # the last block is clamped inside the cache
    idx = lo + jnp.arange(KV_BLOCK)
    keep = jax.lax.dynamic_slice_in_dim(cache_ok_bs, lo, KV_BLOCK, axis=1) & (idx >= i * KV_BLOCK) & (idx < extent)
    kb = rep(jax.lax.dynamic_slice_in_dim(cache_k, lo, KV_BLOCK, axis=3))
    vb = rep(jax.lax.dynamic_slice_in_dim(cache_v, lo, KV_BLOCK, axis=2))
    sb = jnp.einsum("bhqd,bhds->bhqs", qh, kb).astype(jnp.float32)
    sb = jnp.where(keep[:, None, None], sb, _NEG)
    m_new = jnp.maximum(m, sb.max(-1))
    scale_old, eb = jnp.exp(m - m_new), jnp.exp(sb - m_new[..., None])
    l = l * scale_old + eb.sum(-1)
    o = o * scale_old[..., None] + jnp.einsum("bhqs,bhsd->bhqd", eb.astype(vb.dtype), vb)
    return m_new, l, o

  trips = jnp.clip((extent + KV_BLOCK - 1) // KV_BLOCK, 0, -(-size // KV_BLOCK))
  _, l, o = jax.lax.fori_loop(0, trips, body, acc)
  return jnp.swapaxes(o / l[..., None], 1, 2).astype(new_v.dtype)


def attend(q_bqhk, new_k, new_v, new_ok_bt, cache_k, cache_v, cache_ok_bs, query_chunk=104, cache_extent=None):
  """Softmax attention of the last Q tokens of a new block over the cache and the block.

  new_k/new_v (B, H_kv, T, d): the block's own keys/values, causal inside the block (query
  i of the last Q sits at block position T - Q + i); new_ok (B, T) marks visible block keys.
  cache_k (B, H_kv, d, S) and cache_v (B, H_kv, S, d) (`kv_cache`'s layout), cache_ok (B, S):
  earlier tokens, all in the past (S may be 0). Masked scores use the float32 minimum rather
  than -inf, so a row without a visible key stays finite. Long query blocks run in chunks to
  bound the score memory.
  cache_extent (traced int, optional): no cache slot at or past it is visible; the cache is
  then read in blocks of KV_BLOCK slots up to it only (`_blocked_cache`), not in full.
  """
  b, q, h, d = q_bqhk.shape
  t = new_k.shape[2]
  groups = h // new_k.shape[1]
  rep = (lambda x: jnp.repeat(x, groups, axis=1)) if groups > 1 else (lambda x: x)
  slots = cache_v.shape[2]
  bounded = cache_extent is not None and slots > KV_BLOCK
  raw_cache = (cache_k, cache_v)  # the bounded read repeats its blocks, not the whole cache
  new_k, new_v = rep(new_k), rep(new_v)
  if not bounded:
    cache_k, cache_v = rep(cache_k), rep(cache_v)
  scale = 1.0 / math.sqrt(d)
  has_cache = slots > 0

  def one(qc, qpos):  # qc (B, c, H, d); qpos (c,) positions inside the block
    qh = jnp.swapaxes(qc * scale, 1, 2)
    keep = new_ok_bt[:, None, :] & (jnp.arange(t)[None, :] <= qpos[:, None])[None]
    s = jnp.where(keep[:, None], jnp.einsum("bhqd,bhsd->bhqs", qh, new_k).astype(jnp.float32), _NEG)
    if not has_cache:
      p = jax.nn.softmax(s, axis=-1).astype(new_v.dtype)
      return jnp.einsum("bhqs,bhsd->bqhd", p, new_v)
    if bounded:
      return _blocked_cache(qh, s, new_v, *raw_cache, cache_ok_bs, cache_extent, rep)
    # Two-part softmax over [cache | block] without concatenating the scores.
    sc = jnp.einsum("bhqd,bhds->bhqs", qh, cache_k).astype(jnp.float32)
    sc = jnp.where(cache_ok_bs[:, None, None], sc, _NEG)
    m = jnp.maximum(sc.max(-1, keepdims=True), s.max(-1, keepdims=True))
    ec, en = jnp.exp(sc - m), jnp.exp(s - m)
    denom = ec.sum(-1) + en.sum(-1)  # (B, H, Q)
    o = jnp.einsum("bhqs,bhsd->bhqd", ec.astype(cache_v.dtype), cache_v)
    o = o + jnp.einsum("bhqs,bhsd->bhqd", en.astype(new_v.dtype), new_v)
    return jnp.swapaxes(o / denom[..., None].astype(o.dtype), 1, 2)

  qpos = jnp.arange(t - q, t)
  if q <= query_chunk:
    return one(q_bqhk, qpos)
  if not has_cache and q == t:
    # A whole causal block (the teacher-forced pass): query chunk c needs only the keys up to
    # its last query, so a static loop over a few wide chunks skips the masked-out upper
    # triangle (44 % of the scores for 8 chunks; the 224-px NTP reference step runs a third
    # faster) instead of scoring every key.
    width = max(query_chunk, -(-q // PREFIX_CHUNKS))
    outs = []
    for c0 in range(0, q, width):
      c1 = min(c0 + width, q)
      outs.append(_prefix_chunk(q_bqhk[:, c0:c1], qpos[c0:c1], new_k[:, :, :c1], new_v[:, :, :c1],
                                new_ok_bt[:, :c1], scale))
    return jnp.concatenate(outs, 1)
  n = -(-q // query_chunk)
  pad = n * query_chunk - q
  qs = jnp.pad(q_bqhk, ((0, 0), (0, pad), (0, 0), (0, 0)))
  qs = qs.reshape(b, n, query_chunk, h, d).swapaxes(0, 1)
  ps = jnp.pad(qpos, (0, pad), constant_values=t - 1).reshape(n, query_chunk)
  out = jax.lax.map(lambda a: one(*a), (qs, ps))
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

  def __call__(self, x_btd, pos_bt, new_ok_bt, cache, start, cache_ok_bs, inv_freq,
               last_only=False, cache_extent=None):
    """Attends a block of T new tokens over the cache and itself, then writes the block's
    K/V into the cache at slot `start` (contiguous).

    cache: (k, v) in `kv_cache`'s layout, keys stored after RoPE; S may be 0.
    cache_ok (B, S): visible cache slots, all earlier than the block. new_ok (B, T): visible
    block tokens. last_only: queries (and outputs) for the last token only.
    cache_extent: as `attend`'s (None: read the whole cache).
    """
    b, t, _ = x_btd.shape
    split = lambda y, n: y.reshape(b, t, n, self.head_dim).swapaxes(1, 2)
    k = split(apply_rope(self.k_proj(x_btd).reshape(b, t, self.num_kv, self.head_dim),
                         pos_bt, inv_freq), self.num_kv)
    v = split(self.v_proj(x_btd), self.num_kv)
    xq, pq = (x_btd[:, -1:], pos_bt[:, -1:]) if last_only else (x_btd, pos_bt)
    q = self.q_proj(xq).reshape(b, xq.shape[1], self.num_heads, self.head_dim)
    q = apply_rope(q, pq, inv_freq)
    ck, cv = cache
    o = attend(q, k, v, new_ok_bt, ck, cv, cache_ok_bs, cache_extent=cache_extent)
    if cv.shape[2]:
      # Read the cache before writing it, so XLA can update the buffer in place.
      o, ck, cv = jax.lax.optimization_barrier((o, ck, cv))
      ck = jax.lax.dynamic_update_slice_in_dim(ck, jnp.swapaxes(k, 2, 3).astype(ck.dtype), start, axis=3)
      cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), start, axis=2)
      ck = mesh_lib.constrain(ck, ("batch", None, None, None))
      cv = mesh_lib.constrain(cv, ("batch", None, None, None))
    return self.o_proj(o.reshape(b, xq.shape[1], -1)), (ck, cv)


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

  def __call__(self, h, pos, new_ok, cache, start, cache_ok, inv_freq, last_only=False, cache_extent=None):
    a, cache = self.self_attn(
      self.input_layernorm(h), pos, new_ok, cache, start, cache_ok, inv_freq, last_only, cache_extent
    )
    h = (h[:, -1:] if last_only else h) + a
    h = h + self.mlp(self.post_attention_layernorm(h))
    return mesh_lib.constrain(h, ("batch", None, "act_embed")), cache
