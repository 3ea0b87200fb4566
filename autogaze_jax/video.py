"""The one video reader: every command and the training data decode files here, so a file
is gazed exactly as it is trained on.

Frames come from stream 0 with PyAV, as RGB (grayscale sources included), turned upright when
the container carries display-rotation metadata (phone videos). Every way a file can be bad
(missing, empty, not a video, no video stream, undecodable, too short, frame size changing)
raises `VideoError`, whose `reason` is a short phrase and whose message names the file.
Training clips follow the official frame sampling (`frame_indices`, docs/design.md, "Data").
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np


class VideoError(ValueError):
  """A file that cannot give the frames asked for; `reason` is a short phrase, str(e) names
  the file too."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


def _upright(frame_hwc: np.ndarray, rotation: int) -> np.ndarray:
  """Applies the container's display rotation (degrees counter-clockwise)."""
  k = int(round(rotation / 90)) % 4
  return np.ascontiguousarray(np.rot90(frame_hwc, k)) if k else frame_hwc


def probe(path: str) -> dict:
  """Header facts without decoding the whole file; raises VideoError when it cannot open."""
  import av

  if not os.path.isfile(path):
    raise VideoError(path, "does not exist")
  if os.path.getsize(path) == 0:
    raise VideoError(path, "is empty (0 bytes)")
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise VideoError(path, "has no video stream")
      stream = container.streams.video[0]
      return {"frames": int(stream.frames), "width": stream.codec_context.width,
              "height": stream.codec_context.height, "pix_fmt": stream.codec_context.pix_fmt}
  except VideoError:
    raise
  except Exception as e:  # PyAV raises many types for non-videos and broken headers
    raise VideoError(path, f"cannot be opened as a video ({type(e).__name__}: {e})") from None


def _decoded(path: str):
  """The file's av.VideoFrames in order (not yet converted); VideoError when it cannot be
  opened, and when decoding fails (after the frames that did decode)."""
  import av

  try:
    with av.open(path) as container:
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      yield from container.decode(stream)
  except VideoError:
    raise
  except Exception as e:  # PyAV raises many types (InvalidDataError, OSError, ...)
    raise VideoError(path, f"cannot be decoded ({type(e).__name__}: {e})") from None


def _rgb_upright(frame) -> np.ndarray:
  return _upright(frame.to_ndarray(format="rgb24"), frame.rotation)


def iter_frames(path: str) -> Iterator[np.ndarray]:
  """Every frame of the file in order, uint8 (H, W, 3) RGB, upright. A decoding error raises
  VideoError (after the frames that did decode have been yielded)."""
  probe(path)
  for frame in _decoded(path):
    yield _rgb_upright(frame)


def read_frames(path: str, num_frames: int | None = 16, start: int = 0) -> np.ndarray:
  """Frames [start, start + num_frames) as uint8 (T, H, W, 3); num_frames None reads to the
  end. Raises VideoError for a missing, unreadable or too short file."""
  probe(path)
  frames = []
  for i, frame in enumerate(_decoded(path)):
    if i >= start:
      frames.append(_rgb_upright(frame))
      if num_frames is not None and len(frames) == num_frames:
        break
  if not frames:
    raise VideoError(path, f"has no decodable frames after frame {start}")
  if num_frames is not None and len(frames) < num_frames:
    raise VideoError(path, f"has {len(frames) + start} frames; {num_frames} requested from frame {start}")
  return np.stack(frames)


def read_chunks(path: str, chunk: int = 16, max_frames: int | None = None) -> Iterator[np.ndarray]:
  """uint8 (<= chunk, H, W, 3) pieces of the file, decoded lazily (long videos)."""
  buf, seen = [], 0
  for frame in iter_frames(path):
    buf.append(frame)
    seen += 1
    if len(buf) == chunk:
      yield np.stack(buf)
      buf = []
    if max_frames is not None and seen >= max_frames:
      break
  if buf:
    yield np.stack(buf)
  if seen == 0:
    raise VideoError(path, "has no decodable frames")


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


def read_clip(path: str, clip_len: int = 16, sample_rate: int = 1, rng=None,
              min_frames: int = 1, last: bool = False) -> np.ndarray:
  """A training clip, uint8 (clip_len, H, W, 3), sampled by `frame_indices`. A truncated tail
  keeps what decoded and repeats its last frame, as the official reader does."""
  declared = probe(path)["frames"]
  want = frame_indices(declared, clip_len, sample_rate, rng, last) if declared > 0 else None
  keep = set(want.tolist()) if want is not None else None
  stop_at = int(want[-1]) if want is not None else clip_len * sample_rate - 1
  frames, count, reached = {}, 0, False
  try:
    for i, frame in enumerate(_decoded(path)):  # only the kept frames are converted
      count = i + 1
      if keep is None or i in keep:
        frames[i] = _rgb_upright(frame)
      if i >= stop_at:
        reached = True
        break
  except VideoError:
    if not frames:
      raise
  if not frames:
    raise VideoError(path, "has no decodable frames")
  available = max(count, declared) if reached else count
  if available < min_frames:
    raise VideoError(path, f"has {available} decodable frames; at least {min_frames} are required")
  if want is None:  # no declared frame count: sample from what was decoded
    want = frame_indices(count, clip_len, sample_rate, None)
  have = max(frames)
  picked = [frames.get(int(i), frames[have]) for i in want]
  shapes = {f.shape for f in picked}
  if len(shapes) != 1:
    raise VideoError(path, f"frame size changes inside the clip ({sorted(shapes)})")
  return np.stack(picked)


def write_video(path: str, frames_thwc: np.ndarray, fps: int = 25) -> None:
  """Writes uint8 RGB frames as an mpeg4 file."""
  import av

  frames = np.asarray(frames_thwc, np.uint8)
  with av.open(path, "w") as container:
    stream = container.add_stream("mpeg4", rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def list_videos(roots, split: str | None = None) -> list[str]:
  """Video files under each root (or root/split), recursively, sorted per root; `roots` may
  be a comma-separated string as in the official configs."""
  if isinstance(roots, str):
    roots = [r for r in roots.split(",") if r]
  paths = []
  for root in roots:
    base = os.path.join(root, split) if split else root
    if not os.path.isdir(base):
      hint = f" (expected {root}/train and {root}/val, and {root}/test for the main job's report)" if split else ""
      raise ValueError(f"data: {base} is not a directory{hint}")
    found = []
    for parent, _, files in os.walk(base):
      found += [os.path.join(parent, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
    paths += sorted(found, key=lambda p: os.path.relpath(p, base))
  return paths
