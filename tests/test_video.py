"""The one video reader: a phone video stored sideways with a rotation flag comes out upright
through every path that reads files (`gaze`, `gaze-video`, the training data)."""

import pathlib

import numpy as np
from helpers import broken_videos as bv

from autogaze_jax import video as video_lib
from autogaze_jax.cli import main as cli_main
from autogaze_jax.data import sources

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_a_rotated_video_is_upright_for_gazing_and_for_training(tmp_path, capsys):
  path = tmp_path / "rot.mp4"
  stored = bv.rotated(path)  # stored 64 high x 96 wide; displayed 96 high x 64 wide
  assert stored.shape[1:3] == (64, 96)
  gaze_frames = video_lib.read_frames(str(path), 8)  # what `gaze` reads
  chunk = next(video_lib.read_chunks(str(path), 8))  # what `gaze-video` and `encode` read
  train = sources.FolderSource([str(path)], 8, 1, "first", 1).load(0, np.random.default_rng(0))  # training
  assert gaze_frames.shape == chunk.shape == train.shape == (8, 96, 64, 3)
  np.testing.assert_array_equal(gaze_frames, chunk)
  np.testing.assert_array_equal(gaze_frames, train)
  upright = np.rot90(stored[:8], 3, axes=(1, 2)).astype(int)
  assert np.abs(upright - gaze_frames).mean() < 15 < np.abs(np.rot90(stored[:8], 1, axes=(1, 2)) - gaze_frames).mean()
  # gaze-video end to end: its masks cover the upright frame (rows x cols of 16-px cells)
  rc = cli_main.main(["gaze-video", "--config", f"{ROOT}/configs/gaze.py:tiny", "--video", str(path),
                      "--gazing-ratio", "0.5", "--max-frames", "8", "--out", str(tmp_path / "m.npz")])
  assert rc == 0, capsys.readouterr().err
  assert np.load(tmp_path / "m.npz")["mask_scale64"].shape == (8, 6, 4)
