"""Reading one training clip from a video file (TRAINING.md §8.2), with every way a file can
be bad turned into a `ClipError` whose reason says what is wrong.

Frames are decoded with PyAV from stream 0, converted to RGB (grayscale sources included)
and turned upright when the container carries rotation metadata.
"""

from __future__ import annotations

import os

import numpy as np


class ClipError(ValueError):
  """A file that cannot give a clip; `reason` is a short phrase, str(e) names the file too."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


def frame_indices(num_frames: int, clip_len: int, sample_rate: int = 1, rng=None,
                  last: bool = False) -> np.ndarray:
  """Official frame sampling: the first clip_len*rate frames (a random window when `rng` is
  given, the last one when `last`), clip_len evenly spaced indices; short videos are
  edge-padded."""
  span = clip_len * sample_rate
  if num_frames <= span:
    idx = np.arange(min(clip_len, num_frames))
    return np.concatenate([idx, np.full(clip_len - len(idx), idx[-1])]).astype(np.int64)
  if rng is not None or last:
    end = num_frames if last else int(rng.integers(span, num_frames))
    start = end - span
  else:
    start, end = 0, span
  return np.clip(np.linspace(start, end, clip_len), start, end - 1).astype(np.int64)


def _upright(frame_hwc: np.ndarray, rotation: int) -> np.ndarray:
  """Applies the container's display rotation (degrees counter-clockwise)."""
  k = int(round(rotation / 90)) % 4
  return np.ascontiguousarray(np.rot90(frame_hwc, k)) if k else frame_hwc


def probe(path: str) -> dict:
  """Header facts without decoding the whole file; raises ClipError when it cannot open."""
  import av

  if not os.path.isfile(path):
    raise ClipError(path, "does not exist")
  if os.path.getsize(path) == 0:
    raise ClipError(path, "is empty (0 bytes)")
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ClipError(path, "has no video stream")
      stream = container.streams.video[0]
      return {"frames": int(stream.frames), "width": stream.codec_context.width,
              "height": stream.codec_context.height, "pix_fmt": stream.codec_context.pix_fmt}
  except ClipError:
    raise
  except Exception as e:  # PyAV raises many types for non-videos and broken headers
    raise ClipError(path, f"cannot be opened as a video ({type(e).__name__}: {e})") from None


def read_clip(path: str, clip_len: int = 16, sample_rate: int = 1, rng=None,
              min_frames: int = 1, last: bool = False) -> np.ndarray:
  """uint8 (clip_len, H, W, 3) RGB. Raises ClipError for a file that is missing, not a video,
  truncated before `min_frames` frames, or undecodable."""
  import av

  declared = probe(path)["frames"]
  want = frame_indices(declared, clip_len, sample_rate, rng, last) if declared > 0 else None
  keep = set(want.tolist()) if want is not None else None
  stop_at = int(want[-1]) if want is not None else clip_len * sample_rate - 1
  frames, count, reached = {}, 0, False
  try:
    with av.open(path) as container:
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      for i, frame in enumerate(container.decode(stream)):
        count = i + 1
        if keep is None or i in keep:
          frames[i] = _upright(frame.to_ndarray(format="rgb24"), frame.rotation)
        if i >= stop_at:
          reached = True
          break
  except Exception as e:
    if not frames:
      raise ClipError(path, f"cannot be decoded ({type(e).__name__}: {e})") from None
    # A truncated tail: keep what decoded, as the official reader does.
  if not frames:
    raise ClipError(path, "has no decodable frames")
  available = max(count, declared) if reached else count
  if available < min_frames:
    raise ClipError(path, f"has {available} decodable frames; at least {min_frames} are required")
  if want is None:  # no declared frame count: sample from what was decoded
    want = frame_indices(count, clip_len, sample_rate, None)
  have = max(frames)
  # Indices past a truncated end repeat the last decoded frame (official behaviour).
  picked = [frames.get(int(i), frames[have]) for i in want]
  shapes = {f.shape for f in picked}
  if len(shapes) != 1:
    raise ClipError(path, f"frame size changes inside the clip ({sorted(shapes)})")
  return np.stack(picked)
