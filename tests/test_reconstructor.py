"""The reconstructor against the official tiny VideoMAE reference, and the task interface."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.inference import outputs
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor, sincos_2d
from autogaze_jax.train import task
from autogaze_jax.weights import recon as recon_weights

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def recon(parity_dir):
  kwargs = json.loads((parity_dir / "recon_tiny_seed0_config.json").read_text())["constructor_kwargs"]
  cfg = recon_weights.config_from_hf(kwargs)
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  return recon_weights.load(str(parity_dir / "recon_tiny_seed0.safetensors"), cfg, mesh)


def test_parameter_count_and_fixed_tables(recon, parity_dir):
  assert sum(x.size for x in jax.tree.leaves(nnx.state(recon))) == 1_506_624
  np.testing.assert_allclose(recon.position_embeddings[...][0], sincos_2d(192, 14), atol=1e-6)
  np.testing.assert_allclose(recon.decoder_pos_embed[...][0], sincos_2d(128, 14), atol=1e-6)


@pytest.mark.parametrize("case", ["r010", "r075_tlrm055"])
@pytest.mark.parametrize("tag", ["all16", "sub"])
def test_reconstruction_matches_official(recon, parity_dir, case, tag):
  e = np.load(parity_dir / f"recon_tiny_expected_{case}.npz")
  ids, lens = outputs.from_official(e["gazing_pos"], e["if_padded_gazing"], e["num_gazing_each_frame"], 265, 10)
  frames = jnp.asarray(e[f"{tag}_frame_idx"])
  fn = jax.jit(lambda v, i, l, f: task.evaluate(recon, v, i, l, f))
  out = fn(jnp.asarray(e["video_for_task"]), jnp.asarray(ids), jnp.asarray(lens), frames)
  np.testing.assert_allclose(out["reconstruction"], e[f"{tag}_reconstruction"], **TOL)
  np.testing.assert_allclose(out["loss_each_frame"], e[f"{tag}_loss_each_frame"], **TOL)
  np.testing.assert_allclose(out["loss"], e[f"{tag}_loss_mean"], **TOL)
  flat = outputs.to_official(ids, lens, 265, (32, 64, 112, 224),
                             {"t": out["task_losses"], "m": out["task_losses_mask"]})
  np.testing.assert_array_equal(flat["m"], e[f"{tag}_loss_each_gazing_token_mask"])
  np.testing.assert_allclose(flat["t"], e[f"{tag}_loss_each_gazing_token"], **TOL)
  np.testing.assert_array_equal(out["traj_len_each_reward"], e[f"{tag}_num_gazing_before_each_reconstruction_frame"])
  np.testing.assert_array_equal(out["num_non_padded_gazing_at_each_reconstruction_frame"],
                                e[f"{tag}_num_non_padded_gazing_at_each_reconstruction_frame"])
  if tag == "sub":
    np.testing.assert_allclose(out["reward"], e["sub_rewards"], **TOL)
    np.testing.assert_array_equal(out["traj_len_each_reward"], e["sub_traj_len_each_reward"])


def test_frame_sampling_and_perceptual_terms(recon, parity_dir):
  frames = task.sample_frames(jax.random.key(3), 16, 0.125)
  assert frames.shape == (2,) and len(set(np.asarray(frames).tolist())) == 2
  assert task.sample_frames(jax.random.key(3), 16, 1.0).shape == (16,)
  e = np.load(parity_dir / "recon_tiny_expected_r010.npz")
  ids, lens = outputs.from_official(e["gazing_pos"], e["if_padded_gazing"], e["num_gazing_each_frame"], 265, 10)
  args = (jnp.asarray(e["video_for_task"]), jnp.asarray(ids), jnp.asarray(lens), jnp.array([3, 7]))
  base = task.evaluate(recon, *args)
  feat = lambda x: x[:, :, ::16, ::16] * 2.0  # a stand-in feature extractor
  plus = task.evaluate(recon, *args, perceptual=[(0.3, feat)])
  pred, tgt = base["reconstruction"], args[0][:, np.array([3, 7])]
  mse = jnp.mean(jnp.square(feat(pred[0]) - feat(tgt[0])), axis=(1, 2, 3))
  np.testing.assert_allclose(plus["loss_each_frame"][0], base["loss_each_frame"][0] + 0.3 * mse, rtol=1e-5)
  np.testing.assert_allclose(plus["l1_each_frame"], base["l1_each_frame"])


def test_import_errors(parity_dir, tmp_path):
  from safetensors.numpy import load_file, save_file

  cfg = recon_config.recon_config("tiny")
  sd = load_file(str(parity_dir / "recon_tiny_seed0.safetensors"))
  prefixed = {f"module.mae.{k}": v for k, v in sd.items()}
  prefixed["module.mae.dinov2_reg.embeddings.cls_token"] = np.zeros((1, 1, 8), np.float32)
  save_file(prefixed, str(tmp_path / "prefixed.safetensors"))
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  model = recon_weights.load(str(tmp_path / "prefixed.safetensors"), cfg, mesh)  # prefixes stripped
  np.testing.assert_array_equal(model.mask_token[...], sd["decoder.mask_token"])
  with pytest.raises(ValueError, match=r"missing parameter decoder.decoder_layers.1"):
    recon_weights.load(str(parity_dir / "recon_tiny_seed0.safetensors"), recon_config.recon_config("base"), mesh)
  wide = recon_config.recon_config("tiny")
  wide.decoder_hidden_size = 256
  with pytest.raises(ValueError, match=r"decoder.decoder_embed.bias has shape \(128,\).*\(256,\)"):
    recon_weights.load(str(parity_dir / "recon_tiny_seed0.safetensors"), wide, mesh)
  pt = tmp_path / "videomae.pt"
  pt.write_bytes(b"x")
  try:
    import torch  # noqa: F401
  except ImportError:
    with pytest.raises(ValueError, match="needs torch"):
      recon_weights.read_state_dict(str(pt))


def test_untrained_model_runs_on_a_mesh():
  mesh = mesh_lib.make_mesh((4, 2))
  with mesh_lib.use(mesh):
    model = Reconstructor(recon_config.recon_config("tiny"), nnx.Rngs(0))
  assert model.layers[0].fc1.kernel[...].sharding.spec[0] == "fsdp"
