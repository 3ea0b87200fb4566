import numpy as np
import pytest

from autogaze_jax.inference import tiling


@pytest.mark.parametrize("shape", [(16, 224, 224), (37, 300, 500), (5, 100, 90), (40, 448, 224)])
def test_tile_untile_round_trip(shape):
  rng = np.random.default_rng(0)
  video = rng.integers(0, 255, shape + (3,), dtype=np.uint8)
  tiles, grid = tiling.tile_video(video)
  assert tiles.shape[1:] == (16, 224, 224, 3)
  assert tiles.shape[0] == np.prod(grid.counts)
  assert all(p >= 0 for p in grid.padding)
  np.testing.assert_array_equal(tiling.untile(tiles, grid), video)
  t, y, x = grid.origins[-1]
  assert (t, y, x) == tuple((n - 1) * k for n, k in zip(grid.counts, grid.tile))


def test_padding_is_recorded_and_edge_filled():
  video = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7, 1)
  tiles, grid = tiling.tile_video(video, tile=(2, 4, 4))
  assert grid.shape == (3, 5, 7) and grid.padded_shape == (4, 8, 8) and grid.padding == (1, 3, 1)
  last = tiles[-1]  # covers frames 2-3, rows 4-7, cols 4-7
  np.testing.assert_array_equal(last[1], last[0])  # the padded frame repeats frame 2
  zero, _ = tiling.tile_video(video, tile=(2, 4, 4), pad_mode="constant")
  assert zero[-1][1].sum() == 0


def test_masks_back_to_video_coordinates():
  video = np.zeros((16, 300, 448, 3), np.uint8)
  _, grid = tiling.tile_video(video)
  g = 14
  masks = np.zeros((len(grid.origins), 16, g * g), np.float32)
  masks[1, 0, 0] = 1  # tile (row 0, col 1), frame 0, first cell
  full = tiling.masks_to_video(masks, grid)
  assert full.shape == (16, 19, 28)  # ceil(300/16), 448/16
  assert full[0, 0, 14] == 1 and full.sum() == 1


def test_bad_shapes():
  with pytest.raises(ValueError, match="tiling: expected a"):
    tiling.tile_video(np.zeros((4, 4, 3)))
  with pytest.raises(ValueError, match="empty dimension"):
    tiling.grid_for((0, 10, 10))
