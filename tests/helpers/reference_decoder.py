"""A slow, literal re-implementation of the official decode loop (docs/design.md, "Decoding"), for
checking the fixed-shape decoder's bookkeeping: growing caches, Python loops, ragged steps,
lockstep over the whole batch. It reuses the model's layers (checked by the parity tests)
but none of `autogaze_jax.models.decoding`; only its trunk call is compiled, over cache
buffers grown in 64-slot steps with the slots past the cache's length masked.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax.models import layers

# The growing cache lives in buffers of a multiple of this many slots, the slots past its
# length masked, so one compiled trunk serves many lengths (compiling the trunk, or each of
# its ops eagerly, for every new length made this loop the slowest part of the suite).
BUCKET = 64
_COMPILED = {}


def _compiled_trunk(dec):
  graphdef, state = nnx.split(dec)
  if graphdef not in _COMPILED:
    _COMPILED[graphdef] = jax.jit(lambda st, *a: nnx.merge(graphdef, st).trunk(*a))
  return lambda *a: _COMPILED[graphdef](state, *a)


def _trunk(dec, x, pos, new_ok, cache, cache_ok):
  """Feeds a block after the cache; returns last hidden state and the grown cache.

  cache: (list of (k, v) buffers, length); cache_ok (B, length) visible cache slots."""
  buffers, length = cache
  n = x.shape[1]
  need = -(-(length + n) // BUCKET) * BUCKET
  buffers = [layers.pad_kv_cache(c, need - c[1].shape[2]) for c in buffers]
  ok = jnp.pad(cache_ok, ((0, 0), (0, need - cache_ok.shape[1])))
  h, grown = _compiled_trunk(dec)(x, pos, new_ok, buffers, jnp.int32(length), ok)
  return h[:, -1], (grown, length + n)


def official_generate(model, video, budgets, eps=None):
  """Returns per-frame arrays of local ids (B, n_t), lockstep over the batch as official."""
  dec = model.gaze_decoder
  v, k = dec.vocab - 1, dec.k
  tokens, _ = model.encode(jnp.asarray(video))
  b, t_frames, p, _ = tokens.shape
  attn = dec.layers[0].self_attn
  cache = ([layers.kv_cache(b, attn.num_kv, 0, attn.head_dim) for _ in dec.layers], 0)
  hist = np.zeros((b, 0), bool)  # visibility of cached tokens
  pending = np.zeros((b, 0), np.int64)
  frames = []
  for t in range(t_frames):
    pend_mask = pending != v
    prompt = np.concatenate([hist, pend_mask, np.ones((b, p), bool)], 1)
    pos = np.cumsum(prompt, 1) - 1
    x = jnp.concatenate([dec.embed_tokens(jnp.asarray(pending, jnp.int32)), tokens[:, t]], 1)
    n_new = x.shape[1]
    h, cache = _trunk(dec, x, jnp.asarray(pos[:, -n_new:]), jnp.asarray(prompt[:, -n_new:]), cache,
                      jnp.asarray(hist))
    run_mask = prompt
    stale = pos[:, -k:]
    frame_ids = np.zeros((b, 0), np.int64)
    finished = np.zeros(b, bool)
    first = True
    while True:
      logits, tlp = dec.heads(h)
      logits, tlp = np.asarray(logits, np.float64), np.asarray(tlp)
      scores = logits.copy()
      for bi in range(b):
        scores[bi, :, frame_ids[bi]] = -np.inf
      scores[:, :, v] = -np.inf
      g = frame_ids.shape[1]
      emitted = []
      for i in range(k):
        if len(emitted) + g >= budgets[t]:
          break
        y = scores[:, i].argmax(-1)
        emitted.append(y)
        scores[np.arange(b), i + 1 :, y] = -np.inf
      y = np.stack(emitted, 1)
      n = y.shape[1]
      y[finished] = v
      meet = np.zeros((b, n), bool)
      if eps is not None:
        meet = tlp[:, :n] <= eps[:, t : t + 1]
        if first:
          meet[:, 0] = False
      y = np.where(meet, v, y)
      finished |= meet.any(1) | (g + n >= budgets[t])
      frame_ids = np.concatenate([frame_ids, y], 1)
      first = False
      if finished.all():
        pending = y
        break
      run_mask = np.concatenate([run_mask, np.ones((b, n), bool)], 1)
      h, cache = _trunk(dec, dec.embed_tokens(jnp.asarray(y, jnp.int32)), jnp.asarray(stale),
                        jnp.ones((b, n), bool), cache, jnp.asarray(run_mask[:, :-n]))
    fed = frame_ids[:, : frame_ids.shape[1] - pending.shape[1]]
    hist = np.concatenate([prompt, fed != v], 1)
    frames.append(frame_ids)
  return frames
