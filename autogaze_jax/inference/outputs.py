"""From the fixed-shape decoder outputs to the official output contract (docs/design.md, "The gaze call").

Inside jit every frame has G slots. The official layout is ragged: frame t owns n_t slots,
n_t shared by the batch (the longest clip's count), slots frame-major, ids global
(t * V + local), PAD slots flagged by `if_padded_gazing` (their id is V * (t + 1)).
"""

from __future__ import annotations

import numpy as np

from autogaze_jax import vocab as vocab_lib


def to_official(ids_btg, gen_len_bt, vocab: int, scales, extras=None) -> dict:
  """Host-side compaction. extras: optional {name: (B, T, G) array} compacted alike."""
  ids = np.asarray(ids_btg)
  gen_len = np.asarray(gen_len_bt)
  b, t, g = ids.shape
  n_t = gen_len.max(axis=0) if b else np.zeros((t,), np.int64)
  keep = np.arange(g)[None, :] < n_t[:, None]  # (T, G)
  local = np.where(np.arange(g)[None, None] < gen_len[..., None], ids, vocab)
  glob = local + (np.arange(t) * vocab)[None, :, None]
  pos = glob[:, keep]  # (B, N), frame-major
  padded = local[:, keep] == vocab
  out = {
    "gazing_pos": pos.astype(np.int64),
    "if_padded_gazing": padded,
    "num_gazing_each_frame": n_t.astype(np.int64),
    "num_real_gazing_each_frame": (local != vocab).sum(-1).astype(np.int64),
    "gazing_mask": vocab_lib.gazing_masks(local, scales, vocab),
    "scales": list(scales),
    "frame_sampling_rate": 1,
    "num_vision_tokens_each_frame": vocab,
  }
  for name, arr in (extras or {}).items():
    out[name] = np.asarray(arr)[:, keep]
  return out


def from_official(gazing_pos, if_padded, num_gazing_each_frame, vocab: int, k: int):
  """Official (B, N) gazes -> fixed-shape local ids (B, T, G) and gen_len (B, T)."""
  pos = np.asarray(gazing_pos)
  pad = np.asarray(if_padded, bool)
  n_t = np.asarray(num_gazing_each_frame, np.int64)
  if pos.shape != pad.shape or pos.ndim != 2:
    raise ValueError(f"gazing_info: gazing_pos {pos.shape} and if_padded_gazing {pad.shape} must be equal (B, N)")
  if n_t.sum() != pos.shape[1]:
    raise ValueError(f"gazing_info: sum(num_gazing_each_frame)={n_t.sum()} != N={pos.shape[1]}")
  b, t = pos.shape[0], n_t.shape[0]
  g = max(k, vocab_lib.slots_per_frame(int(n_t.max()) if t else 1, k))
  ids = np.full((b, t, g), vocab, np.int32)
  starts = np.concatenate([[0], np.cumsum(n_t)[:-1]])
  for ti in range(t):
    seg = pos[:, starts[ti] : starts[ti] + n_t[ti]] - ti * vocab
    seg = np.where(pad[:, starts[ti] : starts[ti] + n_t[ti]], vocab, seg)
    if np.any((seg < 0) | (seg > vocab)):
      raise ValueError(f"gazing_info: frame {ti} holds ids outside [{ti * vocab}, {(ti + 1) * vocab})")
    ids[:, ti, : n_t[ti]] = seg
  gen_len = np.broadcast_to(n_t[None].astype(np.int32), (b, t)).copy()
  return ids, gen_len
