"""`autogaze-jax evaluate`: quality against gaze budget. The numbers on a tiny gaze model and
reconstructor; PSNR/SSIM against their definitions; the command end to end on a real sample
clip with the reference weights; errors."""

import json
import pathlib

import numpy as np
import pytest
from conftest import make_tiny
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab
from autogaze_jax.cli import evaluate
from autogaze_jax.cli import main as cli_main
from autogaze_jax.data import synthetic
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pixel_quality_follows_the_definitions():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
  psnr, ssim = evaluate.pixel_quality(a, b)
  mse = ((a.astype(float) - b) ** 2).reshape(2, -1).mean(1)
  np.testing.assert_allclose(psnr, np.mean(10 * np.log10(255**2 / mse)), rtol=1e-6)
  assert 0 < ssim < 1
  assert evaluate.pixel_quality(a, a) == (evaluate.PSNR_CAP, pytest.approx(1.0))


def test_settings_are_checked():
  assert evaluate.settings("0.1,0.5", "0.7", 0.75) == [
    {"ratio": 0.1, "eps": None}, {"ratio": 0.5, "eps": None}, {"ratio": 0.75, "eps": 0.7}]
  with pytest.raises(ValueError, match="--ratios: 1.5 is outside"):
    evaluate.settings("1.5", None, 0.75)
  with pytest.raises(ValueError, match="'x' is not a number"):
    evaluate.settings("0.1,x", None, 0.75)
  with pytest.raises(ValueError, match="--eps: 'nan' is not finite|--eps: nan is not finite"):
    evaluate.settings("0.1", "nan", 0.75)
  with pytest.raises(ValueError, match="--cap: 0 is outside"):
    evaluate.settings("0.1", None, 0)
  with pytest.raises(ValueError, match="give --ratios and/or --eps"):
    evaluate.settings("", None, 0.75)


def test_sweep_on_tiny_models(tmp_path):
  tiny = make_tiny()
  rcfg = recon_config.recon_config("tiny")
  rcfg.scales = tuple(tiny.config.scales)
  with mesh_lib.use(tiny.mesh):
    recon = Reconstructor(rcfg, nnx.Rngs(0))
  clips = [synthetic.make_clip(4, 64, s) for s in range(2)]
  grid = evaluate.settings("0.1,0.75", "0.5", 0.75)  # 0.75 and the eps rows share one slot count
  report = evaluate.run(tiny, recon, ["a", "b"], clips, grid, str(tmp_path))
  assert json.loads((tmp_path / "eval.json").read_text()) == report
  for name in ("eval.md", "quality_vs_ratio.png", "examples.png"):
    assert (tmp_path / name).stat().st_size > 0
  v = tiny.config.num_vision_tokens_each_frame
  for s, want in zip(report["settings"][:2], (0.1, 0.75)):  # fixed ratios gaze exactly their budget
    budget = vocab.budgets_from_ratio(want, 4, v)[0]
    assert all(r["gazes_per_frame"] == [budget] * 4 for r in s["clips"])
    assert s["overall"]["gaze_ratio"]["mean"] == pytest.approx(budget / v)
  eps = report["settings"][2]["clips"]
  assert all(1 <= g <= vocab.budgets_from_ratio(0.75, 1, v)[0] for r in eps for g in r["gazes_per_frame"])
  for s in report["settings"]:
    o = s["overall"]
    assert o["l1"]["mean"] > 0 and np.isfinite(o["psnr"]["mean"]) and -1 < o["ssim"]["mean"] <= 1
    np.testing.assert_allclose(o["l1"]["mean"], np.mean([r["l1"] for r in s["clips"]]))
  assert "| ratio 0.1 |" in (tmp_path / "eval.md").read_text()


def test_command_on_a_real_clip(official_dir, official_recon_dir, parity_dir, tmp_path, capsys):
  videos = tmp_path / "videos"
  videos.mkdir()
  (videos / "clip.mp4").symlink_to(parity_dir.parent / "example_input.mp4")
  out = tmp_path / "eval"
  rc = cli_main.main(["evaluate", "--checkpoint", str(official_dir), "--recon-checkpoint", str(official_recon_dir),
                 "--videos", str(videos), "--ratios", "0.05", "--num-frames", "2", "--out", str(out)])
  assert rc == 0, capsys.readouterr().err
  report = json.loads((out / "eval.json").read_text())
  assert report["num_clips"] == 1 and report["image_size"] == 224
  (row,) = report["settings"][0]["clips"]
  assert row["gazes_per_frame"] == [13, 13] and row["psnr"] > 0


def test_mismatched_vocabularies_are_refused(official_recon_dir, tmp_path, capsys):
  rc = cli_main.main(["evaluate", "--config", f"{ROOT}/configs/gaze.py:tiny", "--recon-checkpoint", str(official_recon_dir),
                 "--out", str(tmp_path)])
  assert rc == 2 and "the gaze model's scales (32, 64) are not the reconstructor's" in capsys.readouterr().err
