"""Reading video files with PyAV, with errors that name the file and the problem."""

from __future__ import annotations

import os

import numpy as np


class VideoError(ValueError):
  """A video file that is missing, unreadable or too short (the message names the file)."""


def read_frames(path: str, num_frames: int | None = 16, start: int = 0) -> np.ndarray:
  """Decodes frames [start, start + num_frames) as uint8 (T, H, W, 3) RGB.

  num_frames None reads to the end. Raises VideoError for a missing, unreadable or too
  short file.
  """
  import av  # imported here: PyAV is only needed when reading files

  if not os.path.isfile(path):
    raise VideoError(f"video: {path} does not exist")
  frames = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise VideoError(f"video: {path} has no video stream")
      for i, frame in enumerate(container.decode(video=0)):
        if i < start:
          continue
        frames.append(frame.to_ndarray(format="rgb24"))
        if num_frames is not None and len(frames) == num_frames:
          break
  except VideoError:
    raise
  except Exception as e:  # PyAV raises many types (InvalidDataError, OSError, ...)
    raise VideoError(f"video: cannot decode {path}: {e}") from None
  if not frames:
    raise VideoError(f"video: {path} has no decodable frames after frame {start}")
  if num_frames is not None and len(frames) < num_frames:
    raise VideoError(
      f"video: {path} has {len(frames) + start} frames; {num_frames} requested from frame {start}"
    )
  return np.stack(frames)


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
