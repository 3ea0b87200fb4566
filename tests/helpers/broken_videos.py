"""Deliberately bad (and awkward but usable) video files for the data tests."""

from __future__ import annotations

import struct

import av
import numpy as np

from autogaze_jax import video as video_lib
from autogaze_jax.data import synthetic


def _write(path, frames, codec="mpeg4", pix_fmt="yuv420p", in_fmt="rgb24"):
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=25)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = pix_fmt
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format=in_fmt)):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def good(path, frames=20, size=96, seed=0):
  video_lib.write_video(str(path), synthetic.make_clip(frames, size, seed))


def not_a_video(path):
  path.write_text("this is a text file with a video extension\n")


def empty(path):
  path.write_bytes(b"")


def truncated(path, seed=1):
  good(path, seed=seed)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 3])


def zero_frames(path):
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=25)
    stream.height, stream.width = 64, 64
    stream.pix_fmt = "yuv420p"
    container.start_encoding()


def few_frames(path, count=2):
  good(path, frames=count)


def grayscale(path):
  frames = synthetic.make_clip(20, 64, 2)[..., 0]
  _write(path, frames, codec="ffv1", pix_fmt="gray", in_fmt="gray")


def odd_size(path):
  _write(path, synthetic.make_clip(20, 80, 3)[:, :65, :49], codec="ffv1", pix_fmt="yuv444p")


def rotated(path):
  """An mp4 stored 96 wide x 64 high whose track matrix says 'rotate 90 degrees'."""
  frames = synthetic.make_clip(20, 96, 4)[:, :64]
  video_lib.write_video(str(path), frames)
  data = bytearray(path.read_bytes())
  tag = data.find(b"tkhd")
  start = tag + 4 + 40  # after version/flags, times, track id, duration, layer, group, volume
  matrix = (0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)
  data[start : start + 36] = struct.pack(">9I", *matrix)
  path.write_bytes(bytes(data))
  return frames
