"""Pre-LN ViT blocks (HF ViT/ViTMAE layout): LayerNorm, biased multi-head attention, GELU MLP.

Attention takes a frame-id rule instead of a materialised mask: key b is visible to query a
iff `key_fid[b] <= query_fid[a]` and key b is not padding. A leading cls token with frame id
-1 is seen by everyone and sees only itself; equal ids everywhere give full attention. With
`same_frame_only`, keys must have the query's own id (block-diagonal attention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from autogaze_jax import mesh as mesh_lib

_NEG = float(jnp.finfo(jnp.float32).min)


def linear(i, o, axes, rngs):
  init = nnx.with_partitioning(nnx.initializers.truncated_normal(0.02), axes)
  return nnx.Linear(i, o, kernel_init=init, bias_init=nnx.with_partitioning(nnx.initializers.zeros, (axes[1],)), rngs=rngs)


def layer_norm(d, eps, rngs):
  return nnx.LayerNorm(
    d, epsilon=eps, use_fast_variance=False, rngs=rngs,
    scale_init=nnx.with_partitioning(nnx.initializers.ones, ("embed",)),
    bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed",)),
  )


PAD_ROW_MODES = ("masked", "self", "zero", "last")


def block_causal_attention(q_bqhd, k_bshd, v_bshd, q_fid_bq, k_fid_bs, k_pad_bs, query_chunk=1024,
                           same_frame_only=False, pad_rows="masked"):
  """softmax(q k^T / sqrt(d)) v under the frame-id rule, chunked over queries.

  Padded keys are never visible. The rows of padded queries (queries and keys are the same
  tokens) are, by `pad_rows`: "masked", whatever the rule gives (unused outputs); "self",
  the rule plus the token itself (the official sdpa path's mask); "zero", all zeros (what the
  official flash-attention path's variable-length kernel returns for them); "last", every
  real key and the padded keys up to the token itself (the official causal flash-attention
  path, which moves padded slots to the end and applies a plain causal mask)."""
  if pad_rows not in PAD_ROW_MODES:
    raise ValueError(f"pad_rows: {pad_rows!r} is not one of {PAD_ROW_MODES}")
  b, q, h, d = q_bqhd.shape
  if pad_rows != "masked" and k_bshd.shape[1] != q:
    raise ValueError(f"pad_rows={pad_rows!r} needs self-attention (as many queries as keys), got {q} and {k_bshd.shape[1]}")
  scale = d**-0.5

  def one(qc, qfid, qidx, qpad):
    cmp = jnp.equal if same_frame_only else jnp.less_equal
    keep = cmp(k_fid_bs[:, None, :], qfid[:, :, None]) & ~k_pad_bs[:, None, :]
    kidx = jnp.arange(k_bshd.shape[1])[None, None, :]
    if pad_rows == "self":
      keep = keep | (kidx == qidx[None, :, None])
    elif pad_rows == "last":
      tail = ~k_pad_bs[:, None, :] | (kidx <= qidx[None, :, None])
      keep = jnp.where(qpad[:, :, None], tail, keep)
    s = jnp.einsum("bqhd,bshd->bhqs", qc * scale, k_bshd).astype(jnp.float32)
    s = jnp.where(keep[:, None], s, _NEG)
    p = jax.nn.softmax(s, axis=-1).astype(v_bshd.dtype)
    return jnp.einsum("bhqs,bshd->bqhd", p, v_bshd)

  qidx = jnp.arange(q)
  qpad = k_pad_bs if pad_rows != "masked" else jnp.zeros((b, q), bool)  # the same tokens as the keys
  if q <= query_chunk:
    out = one(q_bqhd, q_fid_bq, qidx, qpad)
  else:
    n = -(-q // query_chunk)
    pad = n * query_chunk - q
    qs = jnp.pad(q_bqhd, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(b, n, query_chunk, h, d)
    fs = jnp.pad(q_fid_bq, ((0, 0), (0, pad))).reshape(b, n, query_chunk)
    ids = jnp.pad(qidx, (0, pad), constant_values=-1).reshape(n, query_chunk)
    ps = jnp.pad(qpad, ((0, 0), (0, pad))).reshape(b, n, query_chunk)
    out = jax.lax.map(lambda a: one(*a), (qs.swapaxes(0, 1), fs.swapaxes(0, 1), ids, ps.swapaxes(0, 1)))
    out = out.swapaxes(0, 1).reshape(b, n * query_chunk, h, d)[:, :q]
  if pad_rows == "zero":
    out = jnp.where(qpad[:, :, None, None], 0.0, out).astype(out.dtype)
  return out


class ViTAttention(nnx.Module):
  def __init__(self, d: int, heads: int, rngs: nnx.Rngs):
    self.heads = heads
    self.query = linear(d, d, ("embed", "heads"), rngs)
    self.key = linear(d, d, ("embed", "heads"), rngs)
    self.value = linear(d, d, ("embed", "heads"), rngs)
    self.out = linear(d, d, ("heads", "embed"), rngs)

  def __call__(self, x, fid, pad, same_frame_only=False, pad_rows="masked"):
    b, n, d = x.shape
    split = lambda y: y.reshape(b, n, self.heads, d // self.heads)
    o = block_causal_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), fid, fid, pad,
                               same_frame_only=same_frame_only, pad_rows=pad_rows)
    return self.out(o.reshape(b, n, d))


class ViTBlock(nnx.Module):
  """h + s1 * Attn(LN(h)); h + s2 * MLP(LN(h)). Exact (erf) GELU unless `approximate_gelu`
  (tanh, SigLIP); s1, s2 are learned per-channel layer scales (DINOv2) or 1."""

  def __init__(self, d: int, heads: int, mlp: int, eps: float, rngs: nnx.Rngs,
               approximate_gelu=False, layer_scale=False):
    self.layernorm_before = layer_norm(d, eps, rngs)
    self.attention = ViTAttention(d, heads, rngs)
    self.layernorm_after = layer_norm(d, eps, rngs)
    self.fc1 = linear(d, mlp, ("embed", "mlp"), rngs)
    self.fc2 = linear(mlp, d, ("mlp", "embed"), rngs)
    self.approximate_gelu = approximate_gelu
    self.layer_scale = layer_scale
    if layer_scale:
      self.scale1 = nnx.Param(jnp.ones((d,)), out_sharding=("embed",))
      self.scale2 = nnx.Param(jnp.ones((d,)), out_sharding=("embed",))

  def __call__(self, h, fid, pad, same_frame_only=False, pad_rows="masked"):
    a = self.attention(self.layernorm_before(h), fid, pad, same_frame_only, pad_rows)
    h = h + (a * self.scale1[...] if self.layer_scale else a)
    m = self.fc2(jax.nn.gelu(self.fc1(self.layernorm_after(h)), approximate=self.approximate_gelu))
    h = h + (m * self.scale2[...] if self.layer_scale else m)
    return mesh_lib.constrain(h, ("batch", None, "act_embed"))


class PoolingHead(nnx.Module):
  """SigLIP's attention-pooling head: a learned probe attends over the tokens (one multi-head
  attention with a fused q/k/v projection), then LayerNorm and a residual GELU MLP (the
  tower's activation; tanh for SigLIP)."""

  def __init__(self, d: int, heads: int, mlp: int, eps: float, rngs: nnx.Rngs, approximate_gelu: bool = True):
    self.heads = heads
    self.approximate_gelu = approximate_gelu
    self.probe = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (1, 1, d)), out_sharding=(None, None, "embed"))
    self.in_proj = linear(d, 3 * d, ("embed", "heads"), rngs)
    self.out_proj = linear(d, d, ("heads", "embed"), rngs)
    self.layernorm = layer_norm(d, eps, rngs)
    self.fc1 = linear(d, mlp, ("embed", "mlp"), rngs)
    self.fc2 = linear(mlp, d, ("mlp", "embed"), rngs)

  def __call__(self, x_bnd, valid_bn=None):
    """(B, N, D) -> (B, D); keys outside `valid` (e.g. bucket padding) are not attended."""
    b, n, d = x_bnd.shape
    w, bias = self.in_proj.kernel[...], self.in_proj.bias[...]
    q = jnp.broadcast_to(self.probe[...] @ w[:, :d] + bias[:d], (b, 1, d))
    k, v = x_bnd @ w[:, d : 2 * d] + bias[d : 2 * d], x_bnd @ w[:, 2 * d :] + bias[2 * d :]
    split = lambda y: y.reshape(b, y.shape[1], self.heads, d // self.heads)
    fid = jnp.zeros((b, n), jnp.int32)
    pad = jnp.zeros((b, n), bool) if valid_bn is None else ~valid_bn
    o = block_causal_attention(split(q), split(k), split(v), jnp.zeros((b, 1), jnp.int32), fid, pad)
    o = self.out_proj(o.reshape(b, 1, d))
    o = o + self.fc2(jax.nn.gelu(self.fc1(self.layernorm(o)), approximate=self.approximate_gelu))
    return o[:, 0]
