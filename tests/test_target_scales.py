"""target_scales / target_patch_size: layouts, tile split, stitching and the official format."""

import numpy as np
import pytest

from autogaze_jax import vocab
from autogaze_jax.inference import target_scales
from autogaze_jax.models import gaze_config


def _masks_from_ids(ids_btg, cfg):
  """Per-scale masks of the gaze model from local ids (PAD = V)."""
  return vocab.gazing_masks(np.asarray(ids_btg), cfg.scales, cfg.num_vision_tokens_each_frame)


def test_layout_counts_of_the_spec_examples():
  rel = gaze_config.released_config()
  so400m = target_scales.layout_for(rel, [56, 112, 196, 392], 14)
  assert so400m.sides == (4, 8, 14, 28) and so400m.tokens_per_frame == 16 + 64 + 196 + 784 == 1060
  assert (so400m.tiles_per_side, so400m.tile_px, so400m.pad) == (2, 196, 0)
  nvila = target_scales.layout_for(rel, [56, 112, 196, 392], 16)
  assert nvila.sides == (3, 7, 12, 24) and (nvila.tiles_per_side, nvila.tile_px, nvila.pad) == (2, 224, 56)
  assert not target_scales.needs_adaptation(rel, [32, 64, 112, 224], 16)
  assert target_scales.needs_adaptation(rel, [56, 112, 196, 392], 14)
  with pytest.raises(ValueError, match="3 scales given, the gaze model has 4"):
    target_scales.layout_for(rel, [56, 112, 392], 14)


def test_split_tiles_order_and_zero_padding():
  layout = target_scales.layout_for(gaze_config.tiny_config(), [16, 48], 8)  # nt 2, 32-px tiles, pad 16
  v = np.arange(2 * 1 * 1 * 48 * 48, dtype=np.float32).reshape(2, 1, 1, 48, 48) + 1
  tiles = target_scales.split_tiles(v, layout)
  assert tiles.shape == (8, 1, 1, 32, 32)
  np.testing.assert_array_equal(tiles[1, 0, 0, :, :16], v[0, 0, 0, :32, 32:])  # clip 0, row 0, col 1
  np.testing.assert_array_equal(tiles[6, 0, 0, :16, :32], v[1, 0, 0, 32:, :32])  # clip 1, row 1, col 0
  assert (tiles[3, 0, 0, 16:] == 0).all() and (tiles[3, 0, 0, :, 16:] == 0).all()
  with pytest.raises(ValueError, match=r"must be \(B, T, C, 48, 48\)"):
    target_scales.split_tiles(v[..., :40, :40], layout)


def test_hand_checked_small_example():
  # Tiny gaze model: scales 32+64 -> grids 2x2 (ids 0-3) and 4x4 (ids 4-19), PAD 20.
  # Target: 48-px frames, 8-px patches, scales 16+48 -> F = 2, 6 -> N' = 4 + 36 = 40.
  cfg = gaze_config.tiny_config()
  layout = target_scales.layout_for(cfg, [16, 48], 8)
  pad = 20
  ids = np.full((2 * 4, 2, 3), pad)  # (clips x tiles, frames, slots); tiles (0,0) (0,1) (1,0) (1,1)
  ids[0, 0, 0] = 3  # clip 0, tile (0,0), frame 0: coarse cell (1,1) -> coarse id 3
  ids[3, 0, 0] = 4  # tile (1,1): fine cell (0,0) -> stitched (4,4) -> 4 + 4*6 + 4 = 32
  ids[1, 0, :3] = [0, 19, 9]  # tile (0,1): coarse (0,0) -> col 2 (cropped); fine (3,3) -> col 7
  # (cropped); fine (1,1) -> stitched (1,5) -> 4 + 6 + 5 = 15
  ids[2, 1, 0] = 6  # tile (1,0), frame 1: fine (0,2) -> stitched (4,2) -> 4 + 24 + 2 = 30
  ids[4, 0, 0] = 4  # clip 1, tile (0,0), frame 0: fine (0,0) -> 4
  ids[7, 1, :2] = [4, 5]  # clip 1, tile (1,1), frame 1: fine (0,0),(0,1) -> 32, 33
  masks = target_scales.merge_masks(_masks_from_ids(ids, cfg), layout)
  assert [m.shape for m in masks] == [(2, 2, 4), (2, 2, 36)]
  out = target_scales.masks_to_gazes(masks, layout)
  assert out["num_vision_tokens_each_frame"] == 40
  assert out["num_gazing_each_frame"].tolist() == [3, 2]
  assert out["gazing_pos"].tolist() == [[3, 15, 32, 40 + 30, 40 - 1], [4, -1, -1, 40 + 32, 40 + 33]]
  assert out["if_padded_gazing"].tolist() == [[False] * 4 + [True], [False, True, True, False, False]]
  assert out["num_real_gazing_each_frame"].tolist() == [[3, 1], [1, 2]]


def test_identity_when_layouts_agree(tiny):
  cfg = tiny.config  # 64-px frames, scales 32+64, 16-px patches
  video = np.random.default_rng(0).normal(size=(4, 2, 3, 64, 64)).astype(np.float32)
  direct = tiny.gaze(video, 0.25, generate_only=True)
  same = target_scales.gaze(tiny, video, list(cfg.scales), 16, 0.25, generate_only=True)
  assert np.array_equal(same["gazing_pos"], direct["gazing_pos"])
  # The stitching itself is the identity for one tile per frame (only the order changes).
  layout = target_scales.layout_for(cfg, cfg.scales, 16)
  forced = target_scales.masks_to_gazes(target_scales.merge_masks(direct["gazing_mask"], layout), layout)
  for a, b in zip(forced["gazing_mask"], direct["gazing_mask"]):
    np.testing.assert_array_equal(a, b)
  for b in range(4):
    got = forced["gazing_pos"][b][~forced["if_padded_gazing"][b]]
    want = direct["gazing_pos"][b][~direct["if_padded_gazing"][b]]
    assert sorted(got.tolist()) == sorted(want.tolist())
    assert all(np.all(np.diff(got[got // 20 == t]) > 0) for t in range(2))  # ascending in a frame


def test_adapted_gazing_on_tiles(tiny):
  # 2x2 tiles of 64 px (patch 16 -> 4 x 4 per tile), target scales 32+128 -> F = 2, 8.
  video = np.random.default_rng(1).normal(size=(1, 2, 3, 128, 128)).astype(np.float32)
  out = target_scales.gaze(tiny, video, [32, 128], 16, 0.25)
  assert out["num_vision_tokens_each_frame"] == 4 + 64
  assert "log_action_probs" not in out and out["scales"] == [32, 64]
  # Every tile gazes int(0.25 * 20) = 5 ids per frame; the coarse scale keeps tile (0,0) only.
  tiles = target_scales.split_tiles(video, target_scales.layout_for(tiny.config, [32, 128], 16))
  per_tile = tiny.gaze(tiles, 0.25, generate_only=True)
  fine = sum(int(m.sum()) for m in per_tile["gazing_mask"][1:])
  coarse_kept = int(per_tile["gazing_mask"][0][0].sum())
  assert int(out["num_real_gazing_each_frame"].sum()) == fine + coarse_kept
  assert out["gazing_pos"].shape[1] == out["num_gazing_each_frame"].sum()
