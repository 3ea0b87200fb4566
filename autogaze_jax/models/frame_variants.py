"""Reconstructing one frame under many gaze sets that differ only in that frame, without
recomputing what the earlier frames fix (the greedy search's inner loop).

The reconstructor is block-causal: the encoder and decoder states of frames before t do not
depend on frame t's gazes, and the decoder never reads frame t's own slots except through
its canvas (a reconstructed frame's slots are masked as keys). So `prefix` runs the model once
over the shared gazes and keeps every layer's keys and values; `reconstruct` then runs only
frame t's G slots through the encoder and its V canvas tokens through the decoder for each
variant, attending over the kept keys of frames < t plus their own. Equal to the full model
(`Reconstructor.__call__` with frame_idx_r = [t]) up to float rounding; tests check it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from autogaze_jax.models import recon_config

_NEG = float(jnp.finfo(jnp.float32).min)


class Prefix(NamedTuple):
  enc_kv: list  # per encoder layer (k, v), each (B, 1 + T*G, heads, dh)
  dec_kv: list  # per decoder layer (k, v), each (B, 1 + T*G, heads, dh)
  keep: jax.Array  # (B, 1 + T*G) keys a frame-t query sees: cls and the real slots of frames < t


def _split(x, heads: int):
  return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def _layer_kv(layer, h):
  """The keys and values a ViTBlock computes from its input h (..., N, D)."""
  y = layer.layernorm_before(h)
  heads = layer.attention.heads
  return _split(layer.attention.key(y), heads), _split(layer.attention.value(y), heads)


def _run_keeping_kv(layers, x, fid, kpad):
  """The blocks over the full sequence (B, N, D), returning the output and every layer's (k, v)."""
  kv = []
  for layer in layers:
    kv.append(_layer_kv(layer, x))
    x = layer(x, fid, kpad)
  return x, kv


def _variant_block(layer, x, prefix_kv, keep_prefix, keep_own):
  """One ViTBlock for variant queries x (C, B, Q, D): attention over the kept prefix keys
  (B, P) shared by every variant and the variants' own tokens (C, B, Q)."""
  heads = layer.attention.heads
  y = layer.layernorm_before(x)
  q = _split(layer.attention.query(y), heads)
  k, v = _split(layer.attention.key(y), heads), _split(layer.attention.value(y), heads)
  pk, pv = prefix_kv
  scale = q.shape[-1] ** -0.5
  s_pre = jnp.einsum("cbqhd,bshd->cbhqs", q * scale, pk).astype(jnp.float32)
  s_own = jnp.einsum("cbqhd,cbshd->cbhqs", q * scale, k).astype(jnp.float32)
  s_pre = jnp.where(keep_prefix[None, :, None, None, :], s_pre, _NEG)
  s_own = jnp.where(keep_own[:, :, None, None, :], s_own, _NEG)
  p = jax.nn.softmax(jnp.concatenate([s_pre, s_own], -1), axis=-1)
  n_pre = pk.shape[1]
  o = jnp.einsum("cbhqs,bshd->cbqhd", p[..., :n_pre], pv) + jnp.einsum("cbhqs,cbshd->cbqhd", p[..., n_pre:], v)
  x = x + layer.attention.out(o.reshape(*o.shape[:-2], -1))
  m = layer.fc2(jax.nn.gelu(layer.fc1(layer.layernorm_after(x)), approximate=layer.approximate_gelu))
  return x + m


def prefix(recon, tokens_btvd, ids_btg, t) -> Prefix:
  """The shared part for frame t (traced is fine): one pass over the gazes `ids_btg` (frame t's
  own slots and any later frames are ignored by what follows)."""
  b, nt, g = ids_btg.shape
  vocab = sum(recon_config.tokens_per_scale(recon.cfg))
  pad = ids_btg == vocab
  gathered = jnp.take_along_axis(tokens_btvd, jnp.where(pad, 0, ids_btg)[..., None], axis=2).reshape(b, nt * g, -1)
  cls = recon.cls_token[...] + recon.position_embeddings[...][:, :1]
  x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, gathered.shape[-1])), gathered], 1)
  fid = jnp.concatenate([jnp.full((b, 1), -1), jnp.broadcast_to(jnp.repeat(jnp.arange(nt), g), (b, nt * g))], 1)
  kpad = jnp.concatenate([jnp.zeros((b, 1), bool), pad.reshape(b, nt * g)], 1)
  latent, enc_kv = _run_keeping_kv(recon.layers, x, fid, kpad)
  cls_tok, slot_tok, _ = recon.decoder_slots(recon.layernorm(latent), ids_btg)
  seq = jnp.concatenate([cls_tok, slot_tok.reshape(b, nt * g, -1)], 1)
  _, dec_kv = _run_keeping_kv(recon.decoder_layers, seq, fid, kpad)
  return Prefix(enc_kv, dec_kv, (fid < t) & ~kpad)


def reconstruct(recon, pre: Prefix, tokens_btvd, frame_ids_cbg, t):
  """Pixels (C, B, 3, S, S) of frame t for C variants of its gazes, frame_ids (C, B, G) local
  ids (PAD = V), every variant with the prefix's gazes on frames < t."""
  vocab = sum(recon_config.tokens_per_scale(recon.cfg))
  pad = frame_ids_cbg == vocab
  frame_tokens = jax.lax.dynamic_index_in_dim(tokens_btvd, t, axis=1, keepdims=False)  # (B, V, D)
  c = frame_ids_cbg.shape[0]
  x = jnp.take_along_axis(jnp.broadcast_to(frame_tokens[None], (c, *frame_tokens.shape)),
                          jnp.where(pad, 0, frame_ids_cbg)[..., None], axis=2)  # (C, B, G, D)
  for layer, kv in zip(recon.layers, pre.enc_kv):
    x = _variant_block(layer, x, kv, pre.keep, ~pad)
  slots = recon.decoder_embed(recon.layernorm(x))  # (C, B, G, d)
  t_r = jnp.reshape(t, (1,))
  canvas = recon.canvas(slots[:, :, None], frame_ids_cbg[:, :, None], t_r)[:, :, 0]  # (C, B, V, d)
  every = jnp.ones(canvas.shape[:3], bool)
  for layer, kv in zip(recon.decoder_layers, pre.dec_kv):
    canvas = _variant_block(layer, canvas, kv, pre.keep, every)
  return recon.pixels(canvas)
