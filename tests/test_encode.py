"""The `encode` pipeline and command: video -> tiles -> gazes -> gazed-ViT features."""

import pathlib

import jax
import numpy as np
import pytest
from helpers import hf_towers
from safetensors.numpy import save_file

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import video as video_lib
from autogaze_jax.cli import config_files
from autogaze_jax.cli import main as cli_main
from autogaze_jax.data import synthetic
from autogaze_jax.inference import encode, target_scales, tiling
from autogaze_jax.models import vit_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A ViT on 128-px tiles with scales 32+128: the tiny gaze model (64-px, grids 2 and 4) gazes
# 2x2 sub-tiles, and the gazes are stitched into the ViT's 2x2 + 8x8 = 68-token layout.
VIT_CFG = """
from autogaze_jax.models import vit_config


def get_config(arg=None):
  c = vit_config.vit_config("tiny")
  c.scales = (32, 128)
  return c
"""


@pytest.fixture(scope="module")
def vit_cfg_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("cfg") / "vit_small.py"
  path.write_text(VIT_CFG)
  return path


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("video") / "clip.mp4"
  video_lib.write_video(str(path), synthetic.make_clip(20, 160, seed=1)[:, :, :144])  # 20 x 160 x 144
  return path


def test_encode_video_keeps_only_real_gazes(tiny, vit_cfg_file):
  cfg = config_files.load(str(vit_cfg_file))
  encoder = encode.GazedEncoder(encode.load_vit(cfg, mesh=tiny.mesh))
  clip = synthetic.make_clip(6, 160, seed=2)[:, :, :144]
  chunks = [clip[:4], clip[4:]]
  out = encode.encode_video(tiny, encoder, chunks, gazing_ratio=0.25, tiles_per_batch=1, tile_frames=2,
                            progress=False)
  # 160 x 144 -> 2 x 2 tiles of 128 px per 2 frames; chunks of 4 and 2 frames.
  assert out["tile_origins"].tolist()[:5] == [[0, 0, 0], [0, 0, 128], [0, 128, 0], [0, 128, 128], [2, 0, 0]]
  assert len(out["tile_origins"]) == 12
  m = len(out["features"])
  assert out["features"].shape == (m, 32) and np.isfinite(out["features"]).all()
  assert sorted(np.unique(out["frame"])) == list(range(6))
  # Each 64-px sub-tile gazes int(0.25 * 20) = 5 ids per frame; at most 4 sub-tiles x 5 per tile-frame.
  per = np.bincount(out["tile"] * 32 + out["frame"] % 2)
  assert per.max() <= 20 and per.sum() == m
  assert set(np.unique(out["scale"])) <= {0, 1} and out["token"].max() < 68
  side = np.where(out["scale"] == 0, 64, 16)  # pixels of a 128-px tile per cell
  np.testing.assert_array_equal(out["box"][:, 2] - out["box"][:, 0], side)
  # Features equal a direct call on the tile's gazes (no cross-tile leakage, padding dropped).
  first = (out["tile"] == 0)
  tiles, _ = tiling.tile_video(clip[:2], (2, 128, 128))
  video = image_lib.normalize(tiles[0])[None]
  g = target_scales.gaze(tiny, video, cfg.scales, cfg.patch, 0.25, generate_only=True)
  feats, (pos, pad, _) = encoder.encode(tiles[:1], g)
  np.testing.assert_allclose(out["features"][first], feats[0][~pad[0]], atol=1e-5)
  with pytest.raises(ValueError, match=r"tile_frames: must be in \[1, 16\]"):
    encode.encode_video(tiny, encoder, chunks, 0.25, tile_frames=32)


def _run(capsys, *argv):
  rc = cli_main.main([str(a) for a in argv])
  cap = capsys.readouterr()
  return rc, cap.out, cap.err


def test_encode_command(capsys, tmp_path, video_file, vit_cfg_file):
  common = ["encode", "--config", f"{ROOT}/configs/gaze.py:tiny", "--vit-config", vit_cfg_file,
            "--video", video_file, "--gazing-ratio", "0.25", "--max-frames", 3, "--tile-frames", 2,
            "--tiles-per-batch", 1]
  rc, out, err = _run(capsys, *common, "--out", tmp_path / "f.npz")
  assert rc == 0, err
  assert "no --vit; using randomly initialised" in err and "wrote" in out
  data = np.load(tmp_path / "f.npz")
  assert data["features"].shape[1] == 32 and len(data["frame"]) == len(data["features"])
  assert data["tile_origins"].shape == (8, 3) and int(data["num_frames"]) == 3


def test_encode_command_rejects_bad_vit_files(capsys, tmp_path, video_file, vit_cfg_file):
  common = ["encode", "--config", f"{ROOT}/configs/gaze.py:tiny", "--vit-config", vit_cfg_file,
            "--video", video_file, "--out", tmp_path / "f.npz"]
  junk = tmp_path / "junk.safetensors"
  junk.write_bytes(b"not a safetensors file")
  rc, _, err = _run(capsys, *common, "--vit", junk)
  assert rc == 2 and err.strip().splitlines()[-1].startswith(f"error: --vit: cannot read {junk}")
  cfg = vit_config.vit_config("tiny")
  cfg.hidden, cfg.mlp = 48, 96  # another width
  wide = hf_towers.siglip(cfg, np.random.default_rng(0)) | {"vision_model.post_layernorm.bias": np.zeros(48, np.float32)}
  save_file(wide, str(tmp_path / "wide.safetensors"))
  rc, _, err = _run(capsys, *common, "--vit", tmp_path / "wide.safetensors")
  last = err.strip().splitlines()[-1]
  assert rc == 2 and "wide.safetensors" in last and "patch_embedding.bias has shape (48,)" in last, last
  assert not (tmp_path / "f.npz").exists()


def test_load_vit_reads_a_file(tmp_path):
  cfg = vit_config.vit_config("tiny")
  tensors = hf_towers.siglip(cfg, np.random.default_rng(0))
  tensors["vision_model.post_layernorm.bias"] = np.full(32, 0.5, np.float32)
  save_file(tensors, str(tmp_path / "vit.safetensors"))
  model = encode.load_vit(cfg, str(tmp_path / "vit.safetensors"), mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  assert model.tokens_per_frame == 265
  np.testing.assert_array_equal(model.post_layernorm.bias[...], tensors["vision_model.post_layernorm.bias"])
