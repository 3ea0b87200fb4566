"""Generated clips for the embedded default, tests and CPU-sized training.

A clip shows a world larger than the frame through a camera that may pan and zoom (or stay
still: a static background), with textured objects moving across it, a panel of fine
text-like marks, a stripe band, and possibly one scene cut to a different world. Motion and
detail are where the information is, so gazing has something to learn. Every clip is a pure
function of its seed.
"""

from __future__ import annotations

import numpy as np


def _world(rng, side: int, sparse: bool = False) -> np.ndarray:
  """uint8 (side, side, 3): smooth tinted waves, plus (unless sparse) a stripe band and a
  panel of 'text'."""
  yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
  freq = rng.uniform(2, 9, 3) * (0.25 if sparse else 1.0)
  tint = rng.uniform(0.2, 0.6, 3)
  w = np.stack([tint[c] + 0.12 * np.sin(2 * freq[c] * (xx + yy * (c - 1))) for c in range(3)], -1)
  if sparse:  # no sensor noise: what cannot be predicted is the objects
    return np.clip(w * 255, 0, 255).astype(np.uint8)
  w += rng.normal(0, 0.02, w.shape).astype(np.float32)
  y0, h = int(rng.integers(0, side * 3 // 4)), side // 10
  band = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * xx[y0 : y0 + h] * rng.uniform(30, 80)))
  w[y0 : y0 + h] = band[..., None] * 0.85 + 0.05
  # Text-like detail: rows of short dark "words" made of 2x3-cell glyphs on a light panel.
  ph, pw = side // 7, side // 4
  py, px = int(rng.integers(0, side - ph)), int(rng.integers(0, side - pw))
  cell = max(1, side // 200)
  glyphs = rng.random((ph // (4 * cell), pw // (3 * cell))) < 0.45
  glyphs &= rng.random((glyphs.shape[0], 1)) < 0.8  # some empty lines
  marks = np.kron(glyphs, np.ones((4 * cell, 3 * cell), bool))
  marks[3 * cell :: 4 * cell] = False  # line spacing
  panel = np.where(marks[..., None], 0.1, 0.92).astype(np.float32)
  w[py : py + marks.shape[0], px : px + marks.shape[1]] = panel
  return np.clip(w * 255, 0, 255).astype(np.uint8)


def _objects(rng, size: int, sparse: bool = False):
  out = []
  for _ in range(int(rng.integers(1, 4))):
    side = int(size * (rng.uniform(0.2, 0.35) if sparse else rng.uniform(0.1, 0.25)))
    cells = int(rng.integers(1, 3) if sparse else rng.integers(2, 7))
    checker = ((np.indices((side, side)) * cells // side).sum(0) % 2).astype(np.float32)
    colour = rng.uniform(0, 1, 3)
    tex = checker[..., None] * colour + (1 - checker[..., None]) * 0.08
    out.append((side, (tex * 255).astype(np.uint8), rng.uniform(0.1, 0.9, 2), rng.uniform(-0.03, 0.03, 2)))
  return out


def _camera(rng, sparse: bool = False):
  """(pan velocity in world fractions per frame, zoom factor per frame); static half the time
  (always, for sparse scenes)."""
  if sparse or rng.random() < 0.5:
    return np.zeros(2), 1.0
  pan = rng.uniform(-0.012, 0.012, 2)
  zoom = float(np.exp(rng.uniform(-0.025, 0.025))) if rng.random() < 0.5 else 1.0
  return pan, zoom


def _render(world, objects, pan, zoom, t: int, size: int) -> np.ndarray:
  side = world.shape[0]
  scale = zoom**t  # world pixels per frame pixel, relative to a half-size view
  centre = (0.5 + pan * t) * side
  offs = (np.arange(size) - size / 2 + 0.5) * scale * (side / 2) / size
  ys = np.clip((centre[0] + offs).astype(int), 0, side - 1)
  xs = np.clip((centre[1] + offs).astype(int), 0, side - 1)
  frame = world[ys[:, None], xs[None, :]].copy()
  for obj_side, tex, start, vel in objects:
    cy, cx = ((start + vel * t) % 1.0 * size).astype(int)
    y0, x0 = max(0, cy - obj_side // 2), max(0, cx - obj_side // 2)
    y1, x1 = min(size, y0 + obj_side), min(size, x0 + obj_side)
    frame[y0:y1, x0:x1] = tex[: y1 - y0, : x1 - x0]
  return frame


def _cells_scene(rng, grid: int):
  """A 'cells' scene on a grid x grid lattice: (block colours (2, 2, 3), objects). The
  background is four uniform blocks (each grid/2 cells wide); an object is one uniform colour
  on 1x1 to 2x2 cells, with a cell position, a step direction and a period (frames per step;
  0: it stays)."""
  blocks = rng.uniform(0.15, 0.85, (2, 2, 3))
  objects = []
  for _ in range(int(rng.integers(1, 4))):
    h, w = (1, 1) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 3, 2))
    pos = rng.integers(0, grid - 1, 2).astype(int)
    step = rng.choice([-1, 0, 1], 2)
    if not step.any():
      step[int(rng.integers(0, 2))] = 1
    period = int(rng.choice([0, 1, 2, 3]))
    colour = rng.uniform(0, 1, 3)
    colour[int(rng.integers(0, 3))] = float(rng.choice([0.0, 1.0]))  # saturated: unlike the blocks
    objects.append(dict(size=(h, w), pos=pos, step=step, period=period, colour=colour))
  return blocks, objects


def _cells_step(o: dict, grid: int) -> None:
  """Moves object `o` one cell along its direction, bouncing off the edges (in place)."""
  bad = (o["pos"] + o["step"] < 0) | (o["pos"] + o["step"] + np.array(o["size"]) > grid)
  o["step"] = np.where(bad, -o["step"], o["step"])
  o["pos"] = o["pos"] + o["step"]


def _cells_frame(blocks, objects, shift: int, grid: int, size: int) -> np.ndarray:
  cells = np.repeat(np.repeat(blocks, grid // 2, 0), grid // 2, 1)  # (grid, grid, 3)
  cells = np.roll(cells, shift, axis=1)  # the camera panned by `shift` cells
  for o in objects:
    (y, x), (h, w) = o["pos"], o["size"]
    cells[y : y + h, x : x + w] = o["colour"]
  frame = np.repeat(np.repeat(cells, size // grid, 0), size // grid, 1)
  return (frame * 255).astype(np.uint8)


def _cells_clip(rng, num_frames: int, size: int, grid: int = 4) -> np.ndarray:
  """Every cell one colour on a grid x grid lattice (at 64 px and grid 4: the finest 16-px
  patches), so what a patch holds is its mean and which patches are seen, and when, is all
  that matters. The 'pan' shifts the background by one cell, wrapping around (objects keep
  their cells); after it the background blocks straddle the coarse patches."""
  if size % grid or grid % 2 or grid < 4:
    raise ValueError(f"synthetic cells: size {size} must be a multiple of an even grid >= 4 ({grid})")
  scenes = [_cells_scene(rng, grid)]
  cut = num_frames
  if num_frames > 4 and rng.random() < 0.3:
    cut = int(rng.integers(2, num_frames - 1))
    scenes.append(_cells_scene(rng, grid))
  pan_at = int(rng.integers(1, num_frames)) if num_frames > 1 and rng.random() < 0.2 else num_frames
  frames = []
  for t in range(num_frames):
    blocks, objects = scenes[0] if t < cut else scenes[1]
    local = t if t < cut else t - cut
    for o in objects:  # an object steps one cell at every multiple of its period
      if o["period"] and local and local % o["period"] == 0:
        _cells_step(o, grid)
    frames.append(_cells_frame(blocks, objects, 1 if t >= pan_at else 0, grid, size))
  return np.stack(frames)


STYLES = ("rich", "sparse", "cells")


def make_clip(num_frames: int = 16, size: int = 448, seed: int = 0, style: str = "rich") -> np.ndarray:
  """uint8 (T, size, size, 3). style "sparse": a static camera on a smooth, noise-free world
  with a few large moving objects as the only detail. style "cells": a 4x4 lattice of uniform
  cells (four background blocks, objects of 1-4 cells stepping one cell at a time, the
  background shifted by one cell in a fifth of the clips, a cut in ~30 %), aligned with the
  finest patches of a 64-px frame at patch 16 (used by the CPU-sized training runs)."""
  if style not in STYLES:
    raise ValueError(f"synthetic style: {style!r} is not one of {', '.join(STYLES)}")
  rng = np.random.default_rng(seed)
  if style == "cells":
    return _cells_clip(rng, num_frames, size)
  sparse = style == "sparse"
  scenes = [(_world(rng, 2 * size, sparse), _objects(rng, size, sparse), *_camera(rng, sparse))]
  cut = num_frames
  if num_frames > 4 and rng.random() < 0.3:
    cut = int(rng.integers(2, num_frames - 1))
    scenes.append((_world(rng, 2 * size, sparse), _objects(rng, size, sparse), *_camera(rng, sparse)))
  frames = []
  for t in range(num_frames):
    world, objects, pan, zoom = scenes[0] if t < cut else scenes[1]
    frames.append(_render(world, objects, pan, zoom, t if t < cut else t - cut, size))
  return np.stack(frames)
