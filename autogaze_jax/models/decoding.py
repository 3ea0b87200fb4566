"""Autoregressive gazing as fixed-shape `lax.scan`s (docs/design.md, "Decoding").

Frames are the outer scan, decode steps of K tokens the inner one; every shape is static.
The KV cache is laid out in *units* of F = G + K + P slots, unit t = [gaze slots of frame
t-1 (G) | that frame's last step, re-fed at this prefill (K) | vision tokens of frame t (P)],
so cache order is the official sequence order (docs/design.md, "Cache layout") and every write is contiguous.
Whole-clip decoding grows the cache with the frames; streaming with a bounded history
reuses W + 1 units as a ring, with causality decided by each slot's sequence index.

Two batch semantics:
* batch-invariant (default): every clip runs its own number of steps per frame; a clip's
  gazes never depend on the rest of the batch. For batch 1 this is the official behaviour.
* lockstep (`lockstep=True`): the official batch coupling (docs/design.md, "Batch semantics"): all clips decode until
  the last one stops; finished clips are fed PAD tokens with mask 1.
Both keep the official stale RoPE positions of in-frame decode steps (docs/design.md, "Stale positions").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from autogaze_jax.models import layers
from autogaze_jax.models.gaze import GazeModel


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
  """Static decoding settings (part of the compile key)."""

  slots: int  # G: gaze slots per frame, a multiple of K covering the largest budget
  lockstep: bool = False
  sample: bool = False
  top_k: int = 50
  use_task_loss: bool = False
  window: int | None = None  # streaming: keep only the last `window` frames as history
  segments: int = 4  # whole clip: frames run in this many scans with growing caches
  # read the cache only up to the slot being written, in blocks (layers.KV_BLOCK); streaming
  # windows wrap their cache, so they always read all of it. Off by default: on the 2-core
  # CPU it was slower than the masked full read (benchmarks/gaze_speed.py, docs/results.md)
  bounded_reads: bool = False


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class DecodeState:
  """Carry between frames; also the streaming cache."""

  kv: list  # per layer (k, v) in layers.kv_cache's layout, S slots
  key_ok: jax.Array  # (B, S) bool, slot visible as a key
  prev_ids: jax.Array  # (B, G) int32 local ids of the previous frame (PAD = V)
  prev_len: jax.Array  # (B,) int32 generated slots of the previous frame
  prev_last: jax.Array  # (B,) int32 index of the previous frame's last step
  num_visible: jax.Array  # (B,) int32 visible tokens in the sequence so far
  frame: jax.Array  # () int32 absolute index of the next frame
  conv: list  # conv-encoder cache (streaming only; unused by whole-clip decoding)


def unit_size(model: GazeModel, spec: DecodeSpec) -> int:
  """F = G + K + P: [previous frame's gaze slots | its last step, re-fed | vision tokens]."""
  return spec.slots + model.gaze_decoder.k + model.pos_embed.shape[0]


def cache_slots(model: GazeModel, spec: DecodeSpec, num_frames: int) -> int:
  """Cache length for decoding `num_frames` frames (a ring of window + 1 units if set)."""
  units = spec.window + 1 if spec.window else num_frames + 1
  return units * unit_size(model, spec)


def init_state(model: GazeModel, batch: int, spec: DecodeSpec, num_slots: int,
               dtype=jnp.float32) -> DecodeState:
  dec = model.gaze_decoder
  attn = dec.layers[0].self_attn
  grid = int(round(model.pos_embed.shape[0] ** 0.5))
  return DecodeState(
    kv=[layers.kv_cache(batch, attn.num_kv, num_slots, attn.head_dim, dtype) for _ in dec.layers],
    key_ok=jnp.zeros((batch, num_slots), bool),
    prev_ids=jnp.full((batch, spec.slots), dec.vocab - 1, jnp.int32),
    prev_len=jnp.zeros((batch,), jnp.int32),
    prev_last=jnp.zeros((batch,), jnp.int32),
    num_visible=jnp.zeros((batch,), jnp.int32),
    frame=jnp.zeros((), jnp.int32),
    conv=model.vision_model.init_cache(batch, grid, dtype),
  )


def grow_state(state: DecodeState, num_slots: int) -> DecodeState:
  """Pads the cache to `num_slots` slots (new slots invisible)."""
  extra = num_slots - state.key_ok.shape[1]
  return dataclasses.replace(
    state,
    kv=[layers.pad_kv_cache(c, extra) for c in state.kv],
    key_ok=jnp.pad(state.key_ok, ((0, 0), (0, extra))),
  )


def _set_range(x, start, values):
  """x[:, start:start+n] = values for (B, N) arrays (start is traced)."""
  return jax.lax.dynamic_update_slice_in_dim(x, values.astype(x.dtype), start, axis=1)


def _pick_heads(scores_bkv, n_emit, keys_b, step, spec: DecodeSpec):
  """Greedy/sampled choice of K tokens with intra-step exclusion (docs/design.md, "Decoding").

  Returns ids (B, K) and validity (K,) (head i emits iff i < n_emit).
  """
  b, k, v = scores_bkv.shape

  def head(excl, i):
    s = jnp.where(excl, -jnp.inf, scores_bkv[:, i])
    if spec.sample:
      ks = jax.vmap(lambda kk: jax.random.fold_in(jax.random.fold_in(kk, step), i))(keys_b)
      y = jax.vmap(jax.random.categorical)(ks, s)
    else:
      y = jnp.argmax(s, axis=-1)
    y = y.astype(jnp.int32)
    valid = i < n_emit
    excl = excl | (jax.nn.one_hot(y, v, dtype=bool) & valid)
    return excl, y

  _, ys = jax.lax.scan(head, jnp.zeros((b, v), bool), jnp.arange(k), unroll=True)
  return ys.T, jnp.arange(k) < n_emit


def _prepare_scores(logits_bkv, seen_bv, temperature, spec: DecodeSpec):
  s = jnp.where(seen_bv[:, None, :], -jnp.inf, logits_bkv)
  if spec.sample:
    s = s / temperature
    kth = jax.lax.top_k(s, min(spec.top_k, s.shape[-1]))[0][..., -1:]
    s = jnp.where(s < kth, -jnp.inf, s)
  return s


def _extent(start, spec: DecodeSpec):
  """How far the cache holds visible keys when writing at `start`: every visible slot is
  earlier (units are filled in order), except in a streaming window, whose units wrap."""
  return start if spec.bounded_reads and not spec.window else None


def _prefill(model: GazeModel, state: DecodeState, tokens_bpd, spec: DecodeSpec):
  """Opens frame t: sets key visibility of its unit and feeds [pending step | vision tokens].

  The previous frame's last step (never fed in-frame) is re-fed now, with correct positions,
  into this unit's pending region; its in-frame slots stay invisible. Every visible cache
  slot precedes the tokens being fed, so causality only matters inside a fed block.
  Returns (kv, key_ok, logits, task loss, stale decode positions, next unit's base slot).
  """
  dec = model.gaze_decoder
  b, p, _ = tokens_bpd.shape
  g, kk, vpad = spec.slots, dec.k, dec.vocab - 1
  f = g + kk + p
  t = state.frame
  units = state.key_ok.shape[1] // f
  unit = (lambda i: i % units) if spec.window else (lambda i: i)
  base, nbase = unit(t) * f, unit(t + 1) * f
  ar_g, ar_k = jnp.arange(g, dtype=jnp.int32), jnp.arange(kk, dtype=jnp.int32)

  pend_idx = state.prev_last[:, None] * kk + ar_k[None]
  pend_ids = jnp.take_along_axis(state.prev_ids, pend_idx, axis=1)
  prev_vis = (ar_g[None] < state.prev_len[:, None]) & (state.prev_ids != vpad)
  pend_vis = jnp.take_along_axis(prev_vis, pend_idx, axis=1)
  in_pend = (ar_g[None] >= pend_idx[:, :1]) & (ar_g[None] < pend_idx[:, :1] + kk)
  gaze_ok = jnp.concatenate([prev_vis & ~in_pend, jnp.zeros((b, kk + p), bool)], 1)
  key_ok = _set_range(state.key_ok, base, gaze_ok)
  key_ok = _set_range(key_ok, nbase, jnp.zeros((b, f), bool))
  if spec.window:  # forget the gazes of the frame that just left the window
    key_ok = _set_range(key_ok, unit(t + 2) * f, jnp.zeros((b, g + kk), bool))

  n_before = state.num_visible - pend_vis.sum(-1)
  pend_pos = n_before[:, None] + jnp.cumsum(pend_vis, -1) - 1
  vis_pos = state.num_visible[:, None] + jnp.arange(p, dtype=jnp.int32)[None]
  pend = dec.embed_tokens(pend_ids)
  x = jnp.concatenate([pend, tokens_bpd.astype(pend.dtype)], 1)
  new_ok = jnp.concatenate([pend_vis, jnp.ones((b, p), bool)], 1)
  h, kv = dec.trunk(
    x, jnp.concatenate([pend_pos, vis_pos], 1), new_ok, state.kv, base + g, key_ok,
    last_only=True, cache_extent=_extent(base + g, spec),
  )
  key_ok = _set_range(key_ok, base + g, new_ok)
  logits, tlp = dec.heads(h[:, -1])
  # Official quirk (docs/design.md, "Stale positions"): in-frame decode steps reuse the positions of the last K prompt
  # tokens, i.e. the frame's last K vision tokens.
  return kv, key_ok, logits, tlp, vis_pos[:, p - kk :], nbase


def decode_frame(model: GazeModel, state: DecodeState, tokens_bpd, budget, eps_b, keys_b,
                 temperature, spec: DecodeSpec):
  """Gazes one frame. Returns the new state, local ids (B, G) and generated slots (B,)."""
  dec = model.gaze_decoder
  b, p, _ = tokens_bpd.shape
  g, kk, vpad = spec.slots, dec.k, dec.vocab - 1
  ar_g, ar_k = jnp.arange(g, dtype=jnp.int32), jnp.arange(kk, dtype=jnp.int32)
  kv, key_ok, logits, tlp, stale_pos, nbase = _prefill(model, state, tokens_bpd, spec)

  use_tl = spec.use_task_loss
  seen0 = jax.nn.one_hot(jnp.full((b,), vpad), vpad + 1, dtype=bool)

  def step(carry, s):
    kv, key_ok, logits, tlp, seen, ids, finished, gen_len, last = carry
    n_emit = jnp.clip(budget - s * kk, 0, kk)
    running = ~finished
    frame_running = jnp.any(running)
    scores = _prepare_scores(logits, seen, temperature, spec)
    y, valid = _pick_heads(scores, n_emit, keys_b, s, spec)
    meet = jnp.zeros((b, kk), bool)
    if use_tl:
      meet = (tlp <= eps_b[:, None]) & valid[None] & ~((s == 0) & (ar_k == 0))[None]
    y = jnp.where(meet | ~valid[None] | ~running[:, None], vpad, y)
    emit = jnp.broadcast_to(frame_running, (b,)) if spec.lockstep else running
    ids = jnp.where(emit[:, None], jax.lax.dynamic_update_slice_in_dim(ids, y, s * kk, 1), ids)
    gen_len = jnp.where(emit, s * kk + n_emit, gen_len)
    last = jnp.where(emit, s, last)
    seen = seen | (jax.nn.one_hot(y, vpad + 1, dtype=bool).any(1) & emit[:, None])
    finished = finished | (running & (jnp.any(meet, -1) | (s * kk + n_emit >= budget)))
    if spec.lockstep:
      feed = jnp.broadcast_to(frame_running & ~jnp.all(finished), (b,))
    else:
      feed = emit & ~finished

    def run(args):
      kv, key_ok = args
      fed = jnp.broadcast_to(feed[:, None], (b, kk))
      h, kv = dec.trunk(
        dec.embed_tokens(y), stale_pos, fed, kv, nbase + s * kk, key_ok, last_only=True,
        cache_extent=_extent(nbase + s * kk, spec),
      )
      lg, tl = dec.heads(h[:, -1])
      return kv, _set_range(key_ok, nbase + s * kk, fed), lg, tl

    kv, key_ok, logits, tlp = jax.lax.cond(
      jnp.any(feed), run, lambda a: (*a, logits, tlp), (kv, key_ok)
    )
    return (kv, key_ok, logits, tlp, seen, ids, finished, gen_len, last), None

  ids0 = jnp.full((b, g), vpad, jnp.int32)
  zeros_b = jnp.zeros((b,), jnp.int32)
  carry = (kv, key_ok, logits, tlp, seen0, ids0, jnp.zeros((b,), bool), zeros_b, zeros_b)
  carry, _ = jax.lax.scan(step, carry, jnp.arange(g // kk, dtype=jnp.int32))
  kv, key_ok, _, _, _, ids, _, gen_len, last = carry
  real = ((ar_g[None] < gen_len[:, None]) & (ids != vpad)).sum(-1)
  new_state = dataclasses.replace(
    state, kv=kv, key_ok=key_ok, prev_ids=ids, prev_len=gen_len,
    prev_last=last, num_visible=state.num_visible + p + real, frame=state.frame + 1,
  )
  return new_state, ids, gen_len


def frame_keys(key, batch: int):
  """Per-clip keys: a (B,) batch of keys is used as is; a single key is folded per clip."""
  if key is None:
    return jax.random.split(jax.random.key(0), batch)
  if key.ndim == 0:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))
  return key


def _segment_ends(num_frames: int, segments: int) -> list[int]:
  """Frame boundaries of the whole-clip scans; each segment's cache covers its last frame."""
  n = max(1, min(segments, num_frames))
  return sorted({round(num_frames * (i + 1) / n) for i in range(n)})


def generate(model: GazeModel, video, budgets_t, eps_bt, key, temperature, spec: DecodeSpec):
  """Whole-clip gazing. video (B, T, 3, H, W) preprocessed; budgets (T,) int32;
  eps (B, T) float32 (ignored unless spec.use_task_loss); key: typed key or (B,) keys.

  Frames run as `lax.scan`s; the clip is split into `spec.segments` consecutive scans whose
  static cache length covers only the frames seen so far, so attention cost follows the
  real sequence length instead of the whole clip's.

  Returns local ids (B, T, G) int32 (PAD = V) and generated slots per frame (B, T) int32.
  """
  return generate_tokens(model, model.encode(video)[0], budgets_t, eps_bt, key, temperature, spec)


def generate_tokens(model: GazeModel, tokens, budgets_t, eps_bt, key, temperature, spec: DecodeSpec):
  """`generate` from the clips' vision tokens (B, T, P, D) (`model.encode(video)[0]`), for
  callers that decode several rollouts of one clip (GRPO's group) from one encoding."""
  if spec.window:
    raise ValueError("generate: `window` is for streaming; whole-clip decoding keeps all frames")
  b, t_frames = tokens.shape[:2]
  keys = frame_keys(key, b)
  f = unit_size(model, spec)
  state = None

  def body(state, xs):
    tok, budget, eps, ti = xs
    ks = jax.vmap(lambda kk: jax.random.fold_in(kk, ti))(keys)
    state, ids, n = decode_frame(model, state, tok, budget, eps, ks, temperature, spec)
    return state, (ids, n)

  outs, start = [], 0
  for end in _segment_ends(t_frames, spec.segments):
    slots = (end + 1) * f
    state = init_state(model, b, spec, slots, tokens.dtype) if state is None else grow_state(state, slots)
    xs = (tokens[:, start:end].swapaxes(0, 1), budgets_t[start:end], eps_bt[:, start:end].T,
          jnp.arange(start, end))
    state, out = jax.lax.scan(body, state, xs)
    outs.append(out)
    start = end
  ids = jnp.concatenate([o[0] for o in outs], 0)
  lens = jnp.concatenate([o[1] for o in outs], 0)
  return ids.swapaxes(0, 1), lens.T


def stream_step(model: GazeModel, state: DecodeState, frame_b3hw, budget, eps_b, key,
                temperature, spec: DecodeSpec):
  """Gazes one new frame with the streaming caches; equals the same frame of `generate`."""
  tokens, conv = model.encode(frame_b3hw[:, None], state.conv)
  keys = frame_keys(key, tokens.shape[0])
  keys = jax.vmap(lambda kk: jax.random.fold_in(kk, state.frame))(keys)
  state = dataclasses.replace(state, conv=conv)
  return decode_frame(model, state, tokens[:, 0], budget, eps_b, keys, temperature, spec)

