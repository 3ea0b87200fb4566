import numpy as np
import pytest

from autogaze_jax import image as image_lib
from autogaze_jax import video as video_lib
from autogaze_jax.inference import long_video
from autogaze_jax.video import VideoError


def test_tiles_go_back_to_video_coordinates(tiny):
  rng = np.random.default_rng(0)
  video = rng.integers(0, 255, (16, 128, 128, 3), dtype=np.uint8)  # 2 x 2 tiles of 64 px
  out = long_video.gaze_long_video(tiny, [video], gazing_ratio=0.5, tiles_per_batch=3, progress=False)
  assert out["num_tiles"] == 4
  assert out["masks"][64].shape == (16, 8, 8) and out["masks"][32].shape == (16, 4, 4)
  np.testing.assert_array_equal(out["gazes_per_frame"], 4 * 10)  # 4 tiles x budget 10
  # The top-right tile gazed alone gives the same cells.
  tile = image_lib.normalize(video[:, :64, 64:])[None]
  alone = tiny.gaze(tile, gazing_ratio=0.5, generate_only=True)
  np.testing.assert_array_equal(out["masks"][64][:, :4, 4:].reshape(16, 16), alone["gazing_mask"][1][0])
  np.testing.assert_array_equal(out["masks"][32][:, :2, 2:].reshape(16, 4), alone["gazing_mask"][0][0])


def test_odd_sizes_and_lengths(tiny):
  rng = np.random.default_rng(1)
  chunks = [rng.integers(0, 255, (16, 100, 150, 3), dtype=np.uint8),
            rng.integers(0, 255, (4, 100, 150, 3), dtype=np.uint8)]
  out = long_video.gaze_long_video(tiny, chunks, gazing_ratio=0.25, tiles_per_batch=4, progress=False)
  assert out["masks"][32].shape == (20, 4, 5) and out["masks"][64].shape == (20, 7, 10)
  assert out["num_tiles"] == 12 and out["gazes_per_frame"].shape == (20,)


def test_read_chunks(parity_dir, tmp_path):
  mp4 = str(parity_dir.parent / "example_input.mp4")
  sizes = [c.shape for c in video_lib.read_chunks(mp4, 16, max_frames=40)]
  assert sizes == [(16, 448, 448, 3), (16, 448, 448, 3), (8, 448, 448, 3)]
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"\x00" * 100)
  with pytest.raises(VideoError, match="cannot be opened as a video"):
    list(video_lib.read_chunks(str(bad)))


def test_cli_gaze_video(capsys, tmp_path, parity_dir):
  import pathlib

  from autogaze_jax.cli import main as cli_main

  root = pathlib.Path(__file__).resolve().parents[1]
  mp4 = parity_dir.parent / "example_input.mp4"
  rc = cli_main.main(["gaze-video", "--config", f"{root}/configs/gaze.py:tiny", "--video", str(mp4),
                 "--gazing-ratio", "0.5", "--max-frames", "20", "--out", str(tmp_path / "m.npz")])
  assert rc == 0, capsys.readouterr().err
  data = np.load(tmp_path / "m.npz")
  assert data["gazes_per_frame"].shape == (20,)
  assert data["mask_scale64"].shape == (20, 28, 28)  # 448 px / 16-px cells of the 64-px tiles
