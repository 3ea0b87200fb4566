import pathlib

import numpy as np
import pytest

from autogaze_jax import video as video_lib
from autogaze_jax.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = f"{ROOT}/configs/gaze.py:tiny"


def _run(capsys, *argv):
  rc = cli_main.main([str(a) for a in argv])
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_gaze_video_file_writes_outputs_and_picture(capsys, tmp_path, parity_dir):
  mp4 = parity_dir.parent / "example_input.mp4"
  rc, out, err = _run(capsys, "gaze", "--config", TINY, "--video", mp4, "--gazing-ratio", "0.5",
                      "--num-frames", 4, "--out", tmp_path / "g.npz", "--viz", tmp_path / "g.png")
  assert rc == 0, err
  data = np.load(tmp_path / "g.npz")
  assert data["gazing_pos"].shape == (1, 40) and data["num_gazing_each_frame"].tolist() == [10] * 4
  assert data["gazing_mask_s1"].shape == (1, 4, 16)
  assert "log_action_probs" in data and (tmp_path / "g.png").stat().st_size > 1000


def test_gaze_profile_traces_a_compiled_call(capsys, tmp_path, parity_dir):
  mp4 = parity_dir.parent / "example_input.mp4"
  rc, out, err = _run(capsys, "gaze", "--config", TINY, "--video", mp4, "--gazing-ratio", "0.5",
                      "--num-frames", 2, "--generate-only", "--profile", tmp_path / "trace")
  assert rc == 0, err
  assert "compiled; XProf trace in" in out
  traces = list((tmp_path / "trace").rglob("*.xplane.pb"))
  assert traces and traces[0].stat().st_size > 0


def test_convert_then_gaze_npz_matches_official(capsys, tmp_path, official_dir, parity_dir):
  rc, _, err = _run(capsys, "convert", "--from", official_dir, "--out", tmp_path / "ck")
  assert rc == 0, err
  rc, _, err = _run(capsys, "gaze", "--checkpoint", tmp_path / "ck", "--video", parity_dir / "clip16.npz",
                    "--gazing-ratio", "0.1", "--generate-only", "--out", tmp_path / "o.npz")
  assert rc == 0, err
  exp = np.load(parity_dir / "expected_r010.npz")
  np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["gazing_pos"], exp["gazing_pos"])
  rc, _, err = _run(capsys, "convert", "--from", official_dir, "--out", tmp_path / "ck")
  assert rc == 2 and "already holds a checkpoint" in err


@pytest.mark.parametrize("args,message", [
  (["--gazing-ratio", "1.5"], "gazing_ratio: every value must be in (0, 1]"),
  (["--gazing-ratio", "0.1,0.2"], "gazing_ratio: expected one number or 4 per-frame"),
  (["--gazing-ratio", "abc"], "--gazing-ratio: 'abc' is not a number"),
  (["--num-frames", "1000"], "has 64 frames; 1000 requested"),
])
def test_bad_arguments_give_one_error_line(capsys, parity_dir, args, message):
  mp4 = parity_dir.parent / "example_input.mp4"
  argv = ["gaze", "--config", TINY, "--video", mp4, "--num-frames", "4"] + args
  rc, _, err = _run(capsys, *argv)
  assert rc == 2
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last


@pytest.mark.parametrize("flag", ["--num-frames", "--start"])
def test_frame_selection_of_a_preprocessed_npz_is_refused(capsys, parity_dir, flag):
  rc, _, err = _run(capsys, "gaze", "--config", TINY, "--video", parity_dir / "clip16.npz", flag, "4")
  assert rc == 2 and "an .npz input is used whole" in err.strip().splitlines()[-1]


def test_array_record_labels_to_an_object_store_are_refused_before_any_work(capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  out = "gs://bucket/labels.array_record"
  rc, _, err = _run(capsys, "label", "--config", "configs/ntp.py:tiny", "--recon-checkpoint", "runs/x", "--out", out)
  assert rc == 2 and "ArrayRecord labels need a local or mounted path" in err
  assert not (ROOT / "gs:").exists()


def test_unreadable_inputs(capsys, tmp_path):
  bad = tmp_path / "broken.mp4"
  bad.write_bytes(b"\x00" * 1000)
  rc, _, err = _run(capsys, "gaze", "--config", TINY, "--video", bad, "--gazing-ratio", "0.5")
  assert rc == 2 and "cannot be opened as a video" in err
  npz = tmp_path / "x.npz"
  np.savez(npz, frames=np.zeros(3))
  rc, _, err = _run(capsys, "gaze", "--config", TINY, "--video", npz)
  assert rc == 2 and "has no key 'video'" in err
  rc, _, err = _run(capsys, "gaze", "--config", f"{ROOT}/configs/gaze.py:huge", "--video", npz)
  assert rc == 2 and "unknown variant 'huge'" in err


def test_read_frames_and_write_round_trip(tmp_path):
  frames = np.random.default_rng(0).integers(0, 255, (5, 64, 96, 3), dtype=np.uint8)
  video_lib.write_video(str(tmp_path / "v.mp4"), frames)
  back = video_lib.read_frames(str(tmp_path / "v.mp4"), 5)
  assert back.shape == frames.shape
  with pytest.raises(video_lib.VideoError, match="5 frames; 8 requested"):
    video_lib.read_frames(str(tmp_path / "v.mp4"), 8)


def test_gaze_rejects_bad_video_arrays(tiny):
  with pytest.raises(ValueError, match="video: expected 5 dims"):
    tiny.gaze(np.zeros((2, 3, 64, 64), np.float32))
  with pytest.raises(ValueError, match="video: dtype"):
    tiny.gaze(np.zeros((1, 2, 3, 64, 64), np.int32))
  with pytest.raises(ValueError, match="NaN"):
    tiny.gaze(np.full((1, 2, 3, 64, 64), np.nan, np.float32))
  with pytest.raises(ValueError, match="temperature"):
    tiny.gaze(np.zeros((1, 2, 3, 64, 64), np.float32), temperature=0.0)
  with pytest.raises(ValueError, match="window"):
    tiny.stream(1, window=1)
