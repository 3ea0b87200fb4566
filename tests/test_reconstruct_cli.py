"""`autogaze-jax reconstruct` against the official reconstruction references
(`recon_tiny_expected_*.npz`): an official-layout folder (config.json + model.safetensors),
the task video as an .npz, the reference's gazes as `gaze --out` writes them, every frame or
the reference's subset in its order; and its errors."""

import numpy as np
import pytest

from autogaze_jax.cli import main as cli_main

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _inputs(parity_dir, tmp_path, case):
  ref = np.load(parity_dir / f"recon_tiny_expected_{case}.npz")
  video, gazes = tmp_path / "video.npz", tmp_path / "gazes.npz"
  np.savez(video, video=ref["video_for_task"])
  np.savez(gazes, **{k: ref[k] for k in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")})
  return ref, video, gazes


@pytest.mark.parametrize("case", ["r010", "r075_tlrm055"])
@pytest.mark.parametrize("tag", ["all16", "sub"])
def test_matches_the_official_reconstruction(parity_dir, official_recon_dir, tmp_path, capsys, case, tag):
  ref, video, gazes = _inputs(parity_dir, tmp_path, case)
  frames = ref[f"{tag}_frame_idx"]
  which = "all" if tag == "all16" else ",".join(map(str, frames.tolist()))
  out, viz = tmp_path / "out.npz", tmp_path / "out.png"
  rc = cli_main.main(["reconstruct", "--checkpoint", str(official_recon_dir), "--video", str(video), "--gazes", str(gazes),
                 "--frames", which, "--out", str(out), "--viz", str(viz)])
  assert rc in (0, None), capsys.readouterr().err
  got = np.load(out)
  np.testing.assert_array_equal(got["frame_idx"], frames)
  np.testing.assert_allclose(got["reconstruction"], ref[f"{tag}_reconstruction"], **TOL)
  np.testing.assert_allclose(got["loss_each_frame"], ref[f"{tag}_loss_each_frame"], **TOL)
  from PIL import Image

  assert Image.open(viz).size[0] == 224 * len(frames)


@pytest.mark.parametrize("extra, message", [
  (["--frames", "3,{T}"], "frame {T} is outside the video's {T} frames"),
  (["--frames", "2,2"], "repeats a frame"),
  (["--frames", "x"], "is not 'all' or comma-separated"),
  (["--num-frames", "4"], "an .npz input is used whole"),
])
def test_bad_arguments_are_named(parity_dir, official_recon_dir, tmp_path, capsys, extra, message):
  ref, video, gazes = _inputs(parity_dir, tmp_path, "r010")
  t = ref["video_for_task"].shape[1]
  extra, message = [e.format(T=t) for e in extra], message.format(T=t)
  rc = cli_main.main(["reconstruct", "--checkpoint", str(official_recon_dir), "--video", str(video), "--gazes", str(gazes),
                 "--out", str(tmp_path / "o.npz")] + extra)
  assert rc == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_gazes_and_checkpoints_are_named(parity_dir, official_recon_dir, tmp_path, capsys):
  _, video, gazes = _inputs(parity_dir, tmp_path, "r010")
  np.savez(tmp_path / "partial.npz", gazing_pos=np.load(gazes)["gazing_pos"])
  base = ["reconstruct", "--video", str(video), "--out", str(tmp_path / "o.npz")]
  assert cli_main.main(base + ["--checkpoint", str(official_recon_dir), "--gazes", str(tmp_path / "partial.npz")]) == 2
  assert "lacks if_padded_gazing, num_gazing_each_frame" in capsys.readouterr().err
  assert cli_main.main(base + ["--checkpoint", str(tmp_path), "--gazes", str(gazes)]) == 2
  assert "needs config.json and model.safetensors or videomae.pt" in capsys.readouterr().err
