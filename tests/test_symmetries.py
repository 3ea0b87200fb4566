"""Label symmetries: a flipped/turned/recoloured clip with its ids moved alike still labels
the same content, for every scale of the vocabulary; the loader applies them per element."""

import numpy as np
import pytest

from autogaze_jax import vocab as vocab_lib
from autogaze_jax.data import labels as labels_lib
from autogaze_jax.data import loading, sources, symmetries

SCALES, V = (32, 64), 20  # the tiny vocabulary: a 2x2 and a 4x4 grid of 16-px patches at 64 px


def _patch_means(video_thwc, scale):
  """(T, n) mean brightness of each patch of `scale` (cells of 64 // side pixels)."""
  side = scale // 16
  c = 64 // side
  t = video_thwc.shape[0]
  return video_thwc.reshape(t, side, c, side, c, 3).mean((2, 4, 5)).reshape(t, -1)


def test_moved_ids_point_at_the_same_content_on_every_scale():
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
  ids = np.arange(V + 1)[None].repeat(2, 0)  # every local id, and PAD
  offsets = vocab_lib.scale_offsets(SCALES, V)
  perms = set()
  for op in range(8):
    for colours in symmetries.COLOUR_ORDERS[:2]:
      new_video, new_ids = symmetries.apply(video, ids, op, colours, SCALES, V)
      assert new_ids[0, -1] == V  # PAD stays PAD
      for s, scale in enumerate(SCALES):
        n = (scale // 16) ** 2
        old = _patch_means(video, scale)
        new = _patch_means(new_video, scale)
        local = new_ids[:, offsets[s] : offsets[s] + n] - offsets[s]
        assert (0 <= local).all() and (local < n).all()  # a scale's ids stay in that scale
        np.testing.assert_allclose(np.take_along_axis(new, local, 1), old, atol=1e-6)
      perms.add(tuple(new_ids[0]))
  assert len(perms) == 8  # the eight flips/turns are distinct
  _, recoloured = symmetries.apply(video, ids, 0, (2, 1, 0), SCALES, V)
  np.testing.assert_array_equal(recoloured, ids)


def test_parse_rejects_unknown_kinds():
  assert symmetries.parse("flips, colours") == ("flips", "colours") and symmetries.parse("") == ()
  with pytest.raises(ValueError, match="unknown rotations"):
    symmetries.parse("flips,rotations")


def test_loader_moves_labels_with_the_clip():
  source = sources.SyntheticSource(4, 2, 64, seed=0, style="cells")
  key = lambda i: source.key(i)
  table = {labels_lib.key_of(key(i)): {"gazing_pos": [[3, 9], [20 + 5]], "task_losses": [[0.5, 0.4], [0.3]]}
           for i in range(4)}
  plain = loading.LoadClip(source, np.arange(4), 64, labels=table, label_vocab=V, label_slots=3)
  moved = loading.LoadClip(source, np.arange(4), 64, labels=table, label_vocab=V, label_slots=3,
                           label_scales=SCALES, label_symmetries=("flips", "colours"))
  seen = set()
  for seed in range(12):
    a = plain.random_map(1, np.random.default_rng(seed))
    b = moved.random_map(1, np.random.default_rng(seed))
    for t in range(2):
      real = a["label_ids"][t] < V
      for s, scale in enumerate(SCALES):
        off, n = vocab_lib.scale_offsets(SCALES, V)[s], (scale // 16) ** 2
        sel = real & (a["label_ids"][t] >= off) & (a["label_ids"][t] < off + n)
        old = _patch_means(a["video"][t : t + 1].astype(np.float64).sum(-1, keepdims=True).repeat(3, -1), scale)[0]
        new = _patch_means(b["video"][t : t + 1].astype(np.float64).sum(-1, keepdims=True).repeat(3, -1), scale)[0]
        np.testing.assert_allclose(new[b["label_ids"][t][sel] - off], old[a["label_ids"][t][sel] - off])
    seen.add(tuple(b["label_ids"].ravel()))
  assert len(seen) > 2  # different elements get different symmetries


def test_candidate_losses_move_with_the_ids():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(2, 3, V)).astype(np.float32)
  ids = np.arange(V)[None].repeat(2, 0)
  for op in range(8):
    _, new_ids = symmetries.apply(np.zeros((2, 64, 64, 3), np.uint8), ids, op, (0, 1, 2), SCALES, V)
    moved = symmetries.move_candidates(values, op, SCALES, V)
    # the value that id v had is now the value of the id v moved to
    np.testing.assert_array_equal(moved[..., new_ids[0]], values)
