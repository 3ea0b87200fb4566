"""Video -> tiles -> gazes -> features of the gazed patches only (the `encode` command).

The video is read a few frames at a time and cut into tiles of 16 frames (the gaze model's
clip length) x the ViT's frame size (the largest of its scales: 224 for SigLIP2-B/16, 392
for So400m/14) with the padding recorded (tiling.py), tiles go through the gaze
model in fixed-size batches (in the ViT's token layout, see target_scales), and the gazed
ViT encodes only the gazed tokens of each tile, block-causal over its 16 frames. Padded
slots, padded tiles and frames past the end of the video are dropped from the output.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from autogaze_jax import image as image_lib
from autogaze_jax.inference import target_scales, tiling
from autogaze_jax.models import gazed_vit, vit_config
from autogaze_jax.weights import hf_vit


def load_vit(cfg, path: str | None = None, mesh=None, seed: int = 0) -> gazed_vit.GazedViT:
  """A GazedViT with the vision tower of an HF SigLIP/SigLIP2 `model.safetensors`, or
  random weights when `path` is None."""
  tensors = None
  if path is not None:
    from safetensors.numpy import load_file

    try:
      tensors = load_file(path)
    except Exception as e:  # safetensors raises several types for a bad file
      raise ValueError(f"--vit: cannot read {path} as safetensors: {e}") from None
  try:
    return hf_vit.build_gazed_vit(cfg, tensors, mesh=mesh, seed=seed)
  except ValueError as e:
    raise ValueError(f"--vit {path}: {e}") from None


class GazedEncoder:
  """Jitted functional forward passes of a GazedViT (parameters split once)."""

  def __init__(self, model: gazed_vit.GazedViT):
    self.cfg = model.cfg
    self.tokens_per_frame = model.tokens_per_frame
    self.graphdef, self.params = nnx.split(model)
    self.gazed = jax.jit(self._gazed, static_argnames="attn_type")
    self.dense = jax.jit(self._dense)

  def _gazed(self, params, pixels, positions, padded, frame_ids, attn_type=None):
    return nnx.merge(self.graphdef, params)(pixels, positions, padded, frame_ids, attn_type)

  def _dense(self, params, pixels_n3hw):
    return nnx.merge(self.graphdef, params).dense(pixels_n3hw)

  def encode(self, frames_bthwc: np.ndarray, gazes: dict):
    """uint8 frames (B, T, S, S, 3) and official gazes in the ViT's layout -> features
    (B, N', D) of the bucket-padded slots and the packed (positions, padded, frame ids)."""
    packed = gazed_vit.pack_gazes(gazes["gazing_pos"], gazes["if_padded_gazing"],
                                  gazes["num_gazing_each_frame"], self.cfg.token_bucket)
    pixels = image_lib.normalize_siglip(frames_bthwc)
    feats = self.gazed(self.params, pixels, *(jnp.asarray(a) for a in packed))
    return np.asarray(feats), packed


def _token_boxes(local_ids: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
  """Local ids of the ViT layout -> scale index and (y0, x0, y1, x1) boxes in tile pixels."""
  counts = vit_config.tokens_per_scale(cfg)
  starts = np.cumsum([0] + counts[:-1])
  scale = np.searchsorted(starts, local_ids, side="right") - 1
  side = np.sqrt(np.asarray(counts))[scale].astype(np.int64)
  cell = local_ids - starts[scale]
  size = cfg.scales[-1] / side  # pixels of the tile covered by one cell
  r, c = cell // side, cell % side
  boxes = np.stack([r * size, c * size, (r + 1) * size, (c + 1) * size], -1)
  return scale, np.round(boxes).astype(np.int64)


def encode_video(gazer, encoder: GazedEncoder, chunks: Iterable[np.ndarray], gazing_ratio=None,
                 task_loss_requirement=None, tiles_per_batch: int = 4, tile_frames: int = 16,
                 progress: bool = True) -> dict:
  """Gazes and encodes every tile (`tile_frames` x S x S) of a video given as uint8
  (T, H, W, 3) chunks.

  Returns `features` (M, D) of the real gazed tokens, and per token its `frame` (in the
  video), `tile` (row of `tile_origins` (n, 3) = (t, y, x)), `scale` index, `token` (local
  id in the ViT layout) and `box` (y0, x0, y1, x1) in video pixels; plus counts and timings.
  """
  if tiles_per_batch < 1:
    raise ValueError(f"tiles_per_batch: must be >= 1, got {tiles_per_batch}")
  if not 1 <= tile_frames <= gazer.config.max_num_frames:
    raise ValueError(f"tile_frames: must be in [1, {gazer.config.max_num_frames}] (the gaze model's clip length), got {tile_frames}")
  cfg = encoder.cfg
  size, v = cfg.scales[-1], encoder.tokens_per_frame
  rows = {k: [] for k in ("features", "frame", "tile", "scale", "token", "box")}
  origins, frames_seen, gaze_s, vit_s = [], 0, 0.0, 0.0
  t0 = time.perf_counter()
  bar = tqdm(desc="encoding tiles", unit="tile", disable=not progress)
  for chunk in chunks:
    tiles, grid = tiling.tile_video(chunk, (tile_frames, size, size))
    for start in range(0, len(tiles), tiles_per_batch):
      part = tiles[start : start + tiles_per_batch]
      n = len(part)
      part = np.concatenate([part, np.repeat(part[-1:], tiles_per_batch - n, 0)])  # one shape
      g0 = time.perf_counter()
      video = np.stack([image_lib.normalize(t) for t in part])
      gazes = target_scales.gaze(gazer, video, cfg.scales, cfg.patch, gazing_ratio,
                                 task_loss_requirement, generate_only=True)
      g1 = time.perf_counter()
      feats, (pos, pad, fid) = encoder.encode(part, gazes)
      vit_s += time.perf_counter() - g1
      gaze_s += g1 - g0
      frame = grid.origins[start : start + n, :1] + fid[:n]  # in the chunk
      keep = ~pad[:n] & (frame < len(chunk))  # real slots of real tiles and real frames
      b_idx, _ = np.nonzero(keep)
      local = pos[:n][keep] % v
      scale, box = _token_boxes(local, cfg)
      origin = grid.origins[start + b_idx]
      rows["features"].append(feats[:n][keep])
      rows["frame"].append(frames_seen + frame[keep])
      rows["tile"].append(len(origins) + start + b_idx)
      rows["scale"].append(scale)
      rows["token"].append(local)
      rows["box"].append(box + np.tile(origin[:, 1:], 2))
      bar.update(n)
    origins.extend(grid.origins + np.array([frames_seen, 0, 0]))
    frames_seen += len(chunk)
  bar.close()
  if not origins:
    raise ValueError("encode: the video has no frames")
  out = {k: np.concatenate(x) for k, x in rows.items()}
  out["tile_origins"] = np.asarray(origins)
  out["num_frames"] = frames_seen
  out["tokens_per_tile_frame"] = v
  out["gaze_seconds"], out["vit_seconds"] = gaze_s, vit_s
  out["total_seconds"] = time.perf_counter() - t0
  return out
