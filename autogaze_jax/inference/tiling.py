"""Any-resolution, any-length tiling: a (T, H, W, C) video becomes fixed-size tiles
(16 x 224 x 224 by default) with their (t, y, x) origins, padding recorded, so per-tile
results can be put back in the video's own coordinates. Works on numpy arrays (host side).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TileGrid:
  """Where the tiles of one video sit. Tile i covers frames [t, t+tt), rows [y, y+th),
  columns [x, x+tw) of the video padded to (padded_t, padded_h, padded_w)."""

  shape: tuple  # original (T, H, W)
  tile: tuple  # (tt, th, tw)
  origins: np.ndarray  # (N, 3) int: (t, y, x), time-major, then rows, then columns

  @property
  def counts(self) -> tuple:
    return tuple(-(-s // k) for s, k in zip(self.shape, self.tile))

  @property
  def padded_shape(self) -> tuple:
    return tuple(n * k for n, k in zip(self.counts, self.tile))

  @property
  def padding(self) -> tuple:
    return tuple(p - s for p, s in zip(self.padded_shape, self.shape))


def grid_for(shape_thw, tile=(16, 224, 224)) -> TileGrid:
  t, h, w = (int(s) for s in shape_thw)
  if min(t, h, w) < 1:
    raise ValueError(f"tiling: video shape (T, H, W) = {(t, h, w)} has an empty dimension")
  if min(tile) < 1:
    raise ValueError(f"tiling: tile size {tuple(tile)} must be positive")
  nt, nh, nw = (-(-s // k) for s, k in zip((t, h, w), tile))
  it, iy, ix = np.meshgrid(np.arange(nt), np.arange(nh), np.arange(nw), indexing="ij")
  origins = np.stack([it.ravel() * tile[0], iy.ravel() * tile[1], ix.ravel() * tile[2]], 1)
  return TileGrid((t, h, w), tuple(int(k) for k in tile), origins)


def tile_video(video_thwc: np.ndarray, tile=(16, 224, 224), pad_mode: str = "edge"):
  """Returns (tiles (N, tt, th, tw, C), TileGrid). Padding repeats the border ("edge") or
  is zero ("constant"); the grid records how much was added."""
  v = np.asarray(video_thwc)
  if v.ndim != 4:
    raise ValueError(f"tiling: expected a (T, H, W, C) video, got shape {v.shape}")
  grid = grid_for(v.shape[:3], tile)
  pad = [(0, p) for p in grid.padding] + [(0, 0)]
  padded = np.pad(v, pad, mode=pad_mode)
  tt, th, tw = grid.tile
  tiles = np.stack([padded[t : t + tt, y : y + th, x : x + tw] for t, y, x in grid.origins])
  return tiles, grid


def untile(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
  """Inverse of `tile_video`: (N, tt, th, tw, ...) -> (T, H, W, ...) with padding removed."""
  tiles = np.asarray(tiles)
  if tiles.shape[0] != len(grid.origins) or tuple(tiles.shape[1:4]) != grid.tile:
    raise ValueError(f"untile: {tiles.shape[:4]} tiles do not fit a grid of {len(grid.origins)} x {grid.tile}")
  out = np.zeros(grid.padded_shape + tiles.shape[4:], tiles.dtype)
  tt, th, tw = grid.tile
  for tile, (t, y, x) in zip(tiles, grid.origins):
    out[t : t + tt, y : y + th, x : x + tw] = tile
  t, h, w = grid.shape
  return out[:t, :h, :w]


def masks_to_video(masks_n_t_g: np.ndarray, grid: TileGrid) -> np.ndarray:
  """Per-tile gaze masks of one scale, (N, tt, g, g), -> (T, rows, cols) over the video's
  own patch grid (cells of the padded border are dropped)."""
  m = np.asarray(masks_n_t_g)
  g = int(round(m.shape[-1] ** 0.5)) if m.ndim == 3 else m.shape[-1]
  m = m.reshape(m.shape[0], m.shape[1], g, g)
  if grid.tile[1] % g or grid.tile[2] % g:
    raise ValueError(f"masks_to_video: a {g}x{g} grid does not divide tiles of {grid.tile[1:]} px")
  cell_h, cell_w = grid.tile[1] // g, grid.tile[2] // g
  rows, cols = -(-grid.shape[1] // cell_h), -(-grid.shape[2] // cell_w)
  origins = grid.origins // np.array([1, cell_h, cell_w])
  scaled = TileGrid((grid.shape[0], rows, cols), (grid.tile[0], g, g), origins)
  return untile(m[..., None], scaled)[..., 0]
