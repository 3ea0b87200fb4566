"""The perceptual teachers against transformers' own towers, called the way the official
reconstruction loss calls them (references `vit_dinov2reg_seed0*`, `vit_siglip_tower_seed0*`),
and the three official loss terms on one (prediction, target) pair
(`vit_perceptual_loss_seed0_expected.npz`). Sizes come from the files' HF configs."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import vit_config
from autogaze_jax.train import oracle, task
from autogaze_jax.weights import hf_vit

TOL = {"rtol": 1e-4, "atol": 1e-4}  # the reference README's tolerance for these files


def _one():
  return mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])


def _tower(parity_dir, name):
  hf = json.loads((parity_dir / f"{name}_config.json").read_text())["hf_config"]
  cfg = vit_config.config_from_hf(hf)
  tensors = load_file(str(parity_dir / f"{name}.safetensors"))
  return cfg, tensors, oracle.extractor(cfg, tensors, mesh=_one()), np.load(parity_dir / f"{name}_expected.npz")


@pytest.mark.parametrize("name", ["vit_dinov2reg_seed0", "vit_siglip_tower_seed0"])
def test_hidden_states_match_transformers(parity_dir, name):
  """Every hidden state (the embeddings, then each layer, prefix tokens included) on the
  tower's input; the loss takes the last four of these."""
  _, _, model, ref = _tower(parity_dir, name)
  hidden = jax.jit(model.hidden_states)(ref["pixel_values"])
  assert len(hidden) == ref["hidden_states"].shape[0]
  for i, (got, want) in enumerate(zip(hidden, ref["hidden_states"])):
    np.testing.assert_allclose(got, want, **TOL, err_msg=f"hidden state {i}")


def test_dinov2_last_hidden_state_and_pooled_cls(parity_dir):
  _, _, model, ref = _tower(parity_dir, "vit_dinov2reg_seed0")
  last = jax.jit(model.last_hidden_state)(ref["pixel_values"])
  np.testing.assert_allclose(last, ref["last_hidden_state"], **TOL)
  np.testing.assert_allclose(last[:, 0], ref["pooler_output"], **TOL)


def test_dinov2_position_table_is_resized_with_antialias(parity_dir):
  _, _, model, ref = _tower(parity_dir, "vit_dinov2reg_seed0")
  grid = ref["pixel_values"].shape[-1] // model.cfg.patch
  cls_row, patches = model._pos_table(grid)
  np.testing.assert_allclose(np.concatenate([cls_row, patches])[None], ref["position_embeddings_interpolated"], **TOL)


def test_siglip_dense_tower_matches_transformers(parity_dir):
  """Our SigLIP tower with its post-LayerNorm (GazedViT.dense, the stock image ViT) and its
  pooling head gives transformers' `last_hidden_state` and `pooler_output`."""
  cfg, tensors, _, ref = _tower(parity_dir, "vit_siglip_tower_seed0")
  size = ref["pixel_values"].shape[-1]
  cfg.update({"image_size": size, "scales": (size,), "attn_type": "block_causal", "token_bucket": 128})
  model = hf_vit.build_gazed_vit(cfg, tensors, mesh=_one())

  def run(x):
    hidden = model.dense(x)
    return hidden, model.head(hidden)

  hidden, pooled = jax.jit(run)(ref["pixel_values"])
  np.testing.assert_allclose(hidden, ref["last_hidden_state"], **TOL)
  np.testing.assert_allclose(pooled, ref["pooler_output"], **TOL)


def test_official_loss_terms(parity_dir):
  """l1, dinov2_reg, siglip2 and their weighted sum on a (prediction, target) pair in the task
  space, through the loss our reconstruction task uses; the towers see the same pixels as
  transformers did (the official retransform)."""
  loss_ref = np.load(parity_dir / "vit_perceptual_loss_seed0_expected.npz")
  weights = [float(w) for w in loss_ref["loss_weights"]]
  assert weights[0] == 1.0
  towers = [_tower(parity_dir, n) for n in ("vit_dinov2reg_seed0", "vit_siglip_tower_seed0")]
  pair = np.concatenate([loss_ref["pred"], loss_ref["target"]])
  for _, _, model, ref in towers:
    np.testing.assert_allclose(model.from_task_space(pair), ref["pixel_values"], rtol=0, atol=1e-5)
  terms = [(w, model) for w, (_, _, model, _) in zip(weights[1:], towers)]
  pred, target = loss_ref["pred"][:, None], loss_ref["target"][:, None]  # (B, R=1, 3, H, W)
  loss, l1, parts = jax.jit(lambda p, t: task.frame_loss(p, t, terms))(pred, target)
  exact = {"rtol": 1e-4, "atol": 1e-6}  # the README's tolerance for these losses (values ~0.01-0.1)
  np.testing.assert_allclose(l1[:, 0], loss_ref["l1"], **exact)
  np.testing.assert_allclose(parts[:, 0, 0], loss_ref["dinov2_reg"], **exact)
  np.testing.assert_allclose(parts[:, 0, 1], loss_ref["siglip2"], **exact)
  np.testing.assert_allclose(loss[:, 0], loss_ref["combined"], **exact)
