"""Teacher-forced scoring of given gazes (docs/design.md, "Teacher forcing"): per-slot log-probabilities and
task-loss predictions, as NTP and GRPO need them.

One forward pass over the whole sequence with correct positions `cumsum(mask) - 1`. The
slot layout is the fixed-shape one of `decoding`: frame t has G slots; slot j is scored by
head j mod K at the position just before its block of K (docs/design.md, "Teacher forcing").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autogaze_jax.models import layers
from autogaze_jax.models.gaze import GazeModel


def score(model: GazeModel, video, ids_btg, gen_len_bt, fed_ids=None):
  """Returns (log_probs, task_loss) each (B, T, G) float32.

  video (B, T, 3, H, W) preprocessed; ids (B, T, G) local ids, PAD = V; gen_len (B, T):
  slot j of frame t exists iff j < gen_len. G must be a multiple of K. Slots that are PAD
  get log(P(EOS) + 1e-8), as the official code; callers mask them. fed_ids (same shape;
  default `ids`): the ids the decoder reads as its history, where they differ from the ids
  scored (NTP's history noise); a slot's existence still follows `ids` and gen_len.
  """
  return score_tokens(model, model.encode(video)[0], ids_btg, gen_len_bt, fed_ids)


def score_tokens(model: GazeModel, tokens, ids_btg, gen_len_bt, fed_ids=None):
  """`score` from the clips' vision tokens (B, T, P, D) (`model.encode(video)[0]`): GRPO
  encodes each clip once and scores all of its group's rollouts on the same tokens."""
  probs, tau = slot_distributions(model, tokens, ids_btg, gen_len_bt, fed_ids)
  p_sel = jnp.take_along_axis(probs, ids_btg[..., None].astype(jnp.int32), -1)[..., 0]
  return jnp.log(p_sel + 1e-8), tau


def slot_distributions(model: GazeModel, tokens, ids_btg, gen_len_bt, fed_ids=None):
  """Every slot's whole next-id distribution (B, T, G, V+1) (softmax, EOS last) and the
  task-loss predictions (B, T, G), from vision tokens as `score_tokens` takes them."""
  dec = model.gaze_decoder
  b, t_frames, p, d = tokens.shape
  g, kk, vpad = ids_btg.shape[-1], dec.k, dec.vocab - 1
  if g % kk:
    raise ValueError(f"score: slots per frame ({g}) must be a multiple of K={kk}")
  f = g + p
  ar_g = jnp.arange(g)
  gaze_ok = (ar_g < gen_len_bt[..., None]) & (ids_btg != vpad)  # (B, T, G)
  # Units: [gazes of frame u-1 | vision of frame u], u = 0..T (frame -1 and T+... empty).
  fed = ids_btg if fed_ids is None else fed_ids
  gaze_emb = dec.embed_tokens(jnp.concatenate([jnp.full((b, 1, g), vpad, fed.dtype), fed], 1))
  vis_tok = jnp.concatenate([tokens.astype(gaze_emb.dtype), jnp.zeros((b, 1, p, d), gaze_emb.dtype)], 1)
  x = jnp.concatenate([gaze_emb, vis_tok], 2).reshape(b, (t_frames + 1) * f, d)
  ok = jnp.concatenate([
    jnp.concatenate([jnp.zeros((b, 1, g), bool), gaze_ok], 1),
    jnp.concatenate([jnp.ones((b, t_frames, p), bool), jnp.zeros((b, 1, p), bool)], 1),
  ], 2).reshape(b, -1)
  pos = jnp.cumsum(ok, -1) - 1
  attn = dec.layers[0].self_attn
  empty = layers.kv_cache(b, attn.num_kv, 0, attn.head_dim, x.dtype)
  h, _ = dec.trunk(x, pos, ok, [empty] * len(dec.layers), 0, jnp.zeros((b, 0), bool))

  # Source positions per frame: its last vision token, then the last slot of each K block.
  c = g // kk
  t_idx = jnp.arange(t_frames)[:, None]
  src = jnp.concatenate([t_idx * f + f - 1, (t_idx + 1) * f + jnp.arange(1, c + 1)[None] * kk - 1], 1)
  hs = h[:, src]  # (B, T, C+1, D)
  logits, tlp = dec.heads(hs)  # (B, T, C+1, K, V+1), (B, T, C+1, K)
  blk, m = ar_g // kk, ar_g % kk
  probs = jax.nn.softmax(logits, axis=-1)
  own = m + 1 == kk
  tau = jnp.where(own, tlp[:, :, blk + 1, 0], tlp[:, :, blk, jnp.minimum(m + 1, kk - 1)])
  return probs[:, :, blk, m], tau
