"""Label-preserving symmetries of a labelled clip, for NTP training on few labels.

A flip or a quarter turn of every frame moves each patch of each scale to another cell of the
same grid, so a gaze label stays a label of the transformed clip once its ids are permuted
the same way; permuting the colour channels moves no patch. With 8 flips/turns and 6 channel
orders one labelled clip gives up to 48 training clips, which stops a small model from
memorising a few hundred clips' ids instead of reading the frames. (The reconstructor that
made the labels is not exactly invariant, so a transformed label is the greedy choice only up
to that.)
"""

from __future__ import annotations

import itertools

import numpy as np

from autogaze_jax import vocab as vocab_lib

KINDS = ("flips", "colours")
COLOUR_ORDERS = tuple(itertools.permutations(range(3)))


def parse(spec: str) -> tuple[str, ...]:
  """'flips,colours' -> ('flips', 'colours'); '' -> (); unknown names raise."""
  kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
  bad = [k for k in kinds if k not in KINDS]
  if bad:
    raise ValueError(f"data.label_symmetries: unknown {', '.join(bad)}; choose from {', '.join(KINDS)}")
  return kinds


def turn(x: np.ndarray, op: int, axes=(0, 1)) -> np.ndarray:
  """The dihedral op 0..7 on two axes: a mirror (op >= 4) then op % 4 quarter turns."""
  if op >= 4:
    x = np.flip(x, axis=axes[1])
  return np.rot90(x, op % 4, axes=axes)


def id_permutation(scales, vocab: int, op: int) -> np.ndarray:
  """(vocab + 1,) int: where each local id lands under `op` (PAD = vocab stays PAD)."""
  perm = [np.empty(0, np.int64)]
  for offset, side in zip(vocab_lib.scale_offsets(scales, vocab), vocab_lib.grid_sides(scales, vocab)):
    moved = turn(np.arange(side * side).reshape(side, side), op).ravel()  # moved[new cell] = old id
    perm.append(offset + np.argsort(moved))
  return np.concatenate(perm + [np.array([vocab])]).astype(np.int32)


def draw(rng: np.random.Generator, kinds) -> tuple[int, tuple[int, int, int]]:
  """A random (op, colour order) among the enabled kinds (identity for the others)."""
  op = int(rng.integers(8)) if "flips" in kinds else 0
  colours = COLOUR_ORDERS[int(rng.integers(len(COLOUR_ORDERS)))] if "colours" in kinds else (0, 1, 2)
  return op, colours


def apply(video_thwc: np.ndarray, ids_tg: np.ndarray, op: int, colours, scales, vocab: int):
  """The clip (T, S, S, 3) and its local ids (T, G) under (op, colour order)."""
  video = turn(video_thwc, op, axes=(1, 2))[..., list(colours)]
  return np.ascontiguousarray(video), id_permutation(scales, vocab, op)[ids_tg]


def move_candidates(values_tgv: np.ndarray, op: int, scales, vocab: int) -> np.ndarray:
  """Per-id values (..., V) (a label's candidate losses) under `op`: the value of id v moves to
  the id that v lands on, as `apply` moves the ids themselves."""
  out = np.empty_like(values_tgv)
  out[..., id_permutation(scales, vocab, op)[:vocab]] = values_tgv
  return out
