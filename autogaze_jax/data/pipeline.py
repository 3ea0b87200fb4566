"""The Grain pipeline: source -> seed/shuffle/repeat -> this process's shard -> load and
transform (bad files skipped) -> per-process batch -> worker processes -> global jax.Arrays.

  ds = make_dataset(cfg.data, source, batch_size=cfg.batch_size, seed=cfg.seed)
  it = iter(ds)                      # it.get_state() / it.set_state(s): exact resume
  batch = to_global(next(it), mesh)  # {"video": uint8 (B, T, S, S, 3), "index", "skipped"}

Deterministic for a seed; processes read disjoint elements (element k of the shuffled,
repeated stream belongs to process k % process_count); batches are uint8 on the host and
normalised on device (`image.normalize_on_device`).
"""

from __future__ import annotations

import logging

import grain
import jax
import ml_collections
import numpy as np

from autogaze_jax import mesh as mesh_lib
from autogaze_jax import video as video_lib
from autogaze_jax.data import data_config, loading, sources, symmetries
from autogaze_jax.data import labels as labels_lib

log = logging.getLogger("autogaze_jax.data")



def make_source(cfg, split: str = "train", seed: int = 0):
  """The source named by `cfg.source` for a split: 'train', 'val' (dev: what settings are chosen
  on) or 'test' (reported, never tuned on). The real sample clips have no test split of their
  own: they are the out-of-distribution test, read through `source="samples"`."""
  if split not in sources.SPLITS:
    raise ValueError(f"data: split {split!r} is not one of {', '.join(sources.SPLITS)}")
  if cfg.source not in data_config.SOURCES:
    raise ValueError(f"data.source: {cfg.source!r} is not one of {', '.join(data_config.SOURCES)}")
  folder = lambda paths, window=cfg.window: sources.FolderSource(
    paths, cfg.clip_len, cfg.frame_sample_rate, window, cfg.min_frames)
  synthetic = lambda: sources.SyntheticSource(cfg.synthetic_count, cfg.clip_len, cfg.image_size, seed, split,
                                              cfg.synthetic_style)
  if cfg.source == "synthetic":
    return synthetic()
  if cfg.source == "folder":
    if not cfg.root:
      raise ValueError("data.root: source 'folder' needs a directory with train/ and val/")
    return folder(video_lib.list_videos(cfg.root, split))
  if cfg.source == "tfds":
    return sources.TfdsSource(cfg.root, split)
  # The real sample clips: training reads their first frames, validation their last.
  samples = folder(sources.bundled_sample_videos(), "first" if split == "train" else "last")
  return samples if cfg.source == "samples" else sources.CombinedSource([synthetic(), samples])


def first_usable(source, indices, strict: bool) -> int:
  """Index of the first usable item; fails at once (naming the problems) when none is."""
  problems = []
  for i in indices:
    try:
      source.load(int(i), np.random.default_rng(0))
      return int(i)
    except video_lib.VideoError as e:
      if strict:
        raise ValueError(f"data (strict): unusable video {e}") from None
      problems.append(str(e))
  shown = "; ".join(problems[:3]) + (f"; ... ({len(problems)} in all)" if len(problems) > 3 else "")
  raise ValueError(f"data: none of the {len(problems)} items is usable: {shown}")


def labelled(cfg, source, vocab: int, k: int):
  """(labels, indices of the source's clips that have labels, static slots per frame) for
  `cfg.labels`, joined on the last three path components (docs/design.md, "Greedy labels")."""
  if cfg.window != "first" or cfg.crop != "center":
    raise ValueError("data.labels: labels describe the first frames of the uncropped video; they need "
                     f"data.window='first' and data.crop='center' (got {cfg.window!r}, {cfg.crop!r})")
  table = labels_lib.read(cfg.labels)
  keys = [labels_lib.key_of(source.key(i)) for i in range(len(source))]
  indices = np.array([i for i, key in enumerate(keys) if key in table], np.int64)
  if len(indices) == 0:
    raise ValueError(f"data.labels: none of the {len(source)} clips has a label in {cfg.labels} "
                     f"(keys look like {keys[0] if keys else '?'!r} vs {next(iter(table), '?')!r})")
  slots = cfg.label_slots or labels_lib.slot_cap(table, k)
  return table, indices, slots


def make_dataset(cfg, source, *, batch_size: int, seed: int, indices=None, num_epochs=None,
                 process_index: int | None = None, process_count: int | None = None,
                 labels=None, label_vocab: int = 0, label_slots: int = 0, label_scales=(),
                 label_candidates: bool = False, dagger_labels: dict | None = None,
                 dagger_share: float = 0.0) -> grain.IterDataset:
  """The per-process batched stream. `batch_size` is global; each of the process_count
  processes gets batch_size // process_count clips per batch. `indices` restricts the
  source (e.g. to labelled videos, see `labelled`), whose `labels` then join each clip (under
  the symmetries of `cfg.label_symmetries`, ids over the vocabulary of `label_scales`; with
  `label_candidates`, their candidate losses too; with `dagger_labels`, the ids read as history,
  `loading.LoadClip`)."""
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if batch_size % pc:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {pc} processes")
  indices = np.arange(len(source)) if indices is None else np.asarray(indices)
  if len(indices) == 0:
    raise ValueError("data: the source is empty (no videos found, or none with labels)")
  first_usable(source, indices[:1] if cfg.source == "synthetic" else indices, cfg.strict)
  ds = grain.MapDataset.source(indices).seed(seed)
  if cfg.shuffle:
    ds = ds.shuffle()
  ds = ds.repeat(num_epochs)[pi::pc]
  ds = ds.random_map(loading.LoadClip(source, indices, cfg.image_size, cfg.crop, cfg.strict,
                                      cfg.max_retries, cfg.clip_len, labels, label_vocab, label_slots,
                                      label_scales, symmetries.parse(cfg.get("label_symmetries", "")),
                                      label_candidates, dagger_labels, dagger_share))
  ds = ds.batch(batch_size // pc, drop_remainder=True).to_iter_dataset(
    grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch_buffer))
  if cfg.num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers))
  return ds


def for_training(cfg) -> ml_collections.ConfigDict:
  """A training config's `data`, checked against its clip shape (`clip_len`, `image_size`)."""
  data = cfg.data
  if (data.clip_len, data.image_size) != (cfg.clip_len, cfg.image_size):
    raise ValueError(f"config: data.clip_len/image_size ({data.clip_len}, {data.image_size}) differ from "
                     f"clip_len/image_size ({cfg.clip_len}, {cfg.image_size}); set the top-level ones")
  return data


def eval_clips(cfg, count: int, seed: int = 0, split: str = "val") -> np.ndarray:
  """The first `count` usable clips of a held-out split ('val': dev, what training evaluates
  and tunes on; 'test': the main job's report), uint8 (count, T, S, S, 3), the same on every call."""
  if split == "train":
    raise ValueError("data: held-out clips come from 'val' or 'test', not 'train'")
  source = make_source(cfg, split, seed)
  load = loading.LoadClip(source, np.arange(len(source)), cfg.image_size, "center", cfg.strict, 0, cfg.clip_len)
  out = []
  for i in range(len(source)):
    try:
      out.append(load.load(i, np.random.default_rng(i)))
    except video_lib.VideoError as e:
      log.warning("data: held-out clip skipped: %s", e)
    if len(out) == count:
      return np.stack(out)
  raise ValueError(f"data: the {split} split has {len(out)} usable clips; {count} are needed")


def to_global(batch: dict, mesh) -> dict:
  """This process's numpy batch -> global jax.Arrays sharded over the mesh's batch axes."""
  return {k: jax.make_array_from_process_local_data(mesh_lib.batch_sharding(mesh, np.ndim(v)), np.asarray(v))
          for k, v in batch.items()}
