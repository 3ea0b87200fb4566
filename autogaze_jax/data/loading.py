"""The Grain map step that turns a source index into a training clip, where bad files are
handled: a `VideoError` is logged with its reason, counted in the element's `skipped` field,
and replaced by another (seeded, so still deterministic) index, so batches stay full. In
strict mode the first bad file raises instead, naming the file.
"""

from __future__ import annotations

import logging

import grain
import numpy as np

from autogaze_jax import video as video_lib
from autogaze_jax.data import labels as labels_lib
from autogaze_jax.data import symmetries, transforms

log = logging.getLogger("autogaze_jax.data")


class LoadClip(grain.transforms.RandomMap):
  """index -> {"video": uint8 (T, S, S, 3), "index": source index used, "skipped": count},
  plus "label_ids" (T, G), "label_lens" (T,), "label_task_losses" (T, G) when `labels`
  ({key: official entry}, with `label_vocab` and `label_slots`) is given, and
  "label_candidate_losses" (T, G, V) with `label_candidates`. `label_symmetries`
  (kinds of `symmetries`, with the vocabulary's `label_scales`): each labelled clip under a
  random flip/turn and colour order, its ids moved alike (drawn from the element's seeded rng).
  `dagger_labels` ({key: entry with history_pos}, may be empty): the element also carries
  "label_history_ids" (T, G), the ids read as history (the labels themselves, or, for a clip
  drawn from `dagger_labels` with probability `dagger_share`, the model's own gazes there)."""

  def __init__(self, source, indices, size: int, crop: str = "center", strict: bool = False,
               max_retries: int = 32, clip_len: int | None = None, labels: dict | None = None,
               label_vocab: int = 0, label_slots: int = 0, label_scales=(), label_symmetries=(),
               label_candidates: bool = False, dagger_labels: dict | None = None, dagger_share: float = 0.0):
    if crop not in transforms.MODES:
      raise ValueError(f"data.crop: {crop!r} is not one of {', '.join(transforms.MODES)}")
    self.source, self.indices = source, np.asarray(indices)
    self.size, self.crop, self.strict, self.max_retries = size, crop, strict, max_retries
    self.clip_len = clip_len
    self.labels, self.label_vocab, self.label_slots = labels, label_vocab, label_slots
    self.label_scales, self.label_symmetries = tuple(label_scales), tuple(label_symmetries)
    self.label_candidates = label_candidates
    self.dagger_labels, self.dagger_share = dagger_labels, float(dagger_share)
    if not 0.0 <= self.dagger_share <= 1.0:
      raise ValueError(f"data: the share of DAgger labels must be in [0, 1], got {dagger_share}")
    if self.label_symmetries and not self.label_scales:
      raise ValueError("data: label symmetries need the vocabulary's scales")

  def load(self, i: int, rng) -> np.ndarray:
    clip = self.source.load(i, rng)
    if self.clip_len is not None and clip.shape[0] != self.clip_len:
      raise ValueError(f"data: {self.source.key(i)} gives {clip.shape[0]} frames but clip_len is "
                       f"{self.clip_len} (a dataset built for another clip length?)")
    return transforms.to_square(clip, self.size, self.crop, rng)

  def random_map(self, index, rng: np.random.Generator):
    i, skipped = int(index), 0
    while True:
      try:
        clip = self.load(i, rng)
        break
      except video_lib.VideoError as e:
        if self.strict:
          raise ValueError(f"data (strict): unusable video {e}") from None
        skipped += 1
        log.warning("data: skipping %s (%s)", e.path, e.reason)
        if skipped > self.max_retries:
          raise RuntimeError(f"data: {skipped} unusable videos in a row (last: {e}); is the dataset "
                             "mostly broken? Run 'autogaze-jax data check DIR'") from None
        i = int(self.indices[rng.integers(len(self.indices))])
    out = {"video": clip, "index": np.int64(i), "skipped": np.int32(skipped)}
    if self.labels is not None:
      key = labels_lib.key_of(self.source.key(i))
      entry = self.labels[key]
      op, colours = symmetries.draw(rng, self.label_symmetries) if self.label_symmetries else (0, None)
      if self.dagger_labels and key in self.dagger_labels and rng.random() < self.dagger_share:
        entry = self.dagger_labels[key]
      ids, lens, losses = labels_lib.to_arrays(entry, self.label_vocab, self.label_slots, key)
      cands = (labels_lib.candidate_array(entry, self.label_vocab, self.label_slots, key)
               if self.label_candidates else None)
      history = (labels_lib.history_array(entry, self.label_vocab, self.label_slots)
                 if self.dagger_labels is not None else None)
      if self.label_symmetries:
        out["video"], ids = symmetries.apply(clip, ids, op, colours, self.label_scales, self.label_vocab)
        if cands is not None:
          cands = symmetries.move_candidates(cands, op, self.label_scales, self.label_vocab)
        if history is not None:
          history = symmetries.id_permutation(self.label_scales, self.label_vocab, op)[history]
      out.update(label_ids=ids, label_lens=lens, label_task_losses=losses)
      if history is not None:
        out["label_history_ids"] = history
      if cands is not None:
        out["label_candidate_losses"] = cands
    return out
