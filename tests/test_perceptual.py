"""Perceptual feature extractors: HF-layout import, feature shapes, and the loss plug-in."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from helpers import hf_towers
from safetensors.numpy import save_file

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import vit_config
from autogaze_jax.train import oracle


def _one():
  return mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])


@pytest.mark.parametrize("kind", ["dinov2_reg", "siglip2"])
def test_import_and_feature_shapes(kind, tmp_path):
  rng = np.random.default_rng(0)
  cfg = vit_config.dinov2_reg_config("tiny") if kind == "dinov2_reg" else vit_config.siglip2_config("tiny")
  tensors = (hf_towers.dinov2 if kind == "dinov2_reg" else hf_towers.siglip)(cfg, rng)
  path = tmp_path / f"{kind}.safetensors"
  save_file(tensors, str(path))
  pc = ml_collections.ConfigDict(dict(dinov2="", siglip2="", weights=(0.3, 0.3), size="tiny", official=False))
  pc["dinov2" if kind == "dinov2_reg" else "siglip2"] = str(path)
  (w, model), = oracle.load_teachers(pc, mesh=_one()).terms()
  assert w == 0.3
  x = jnp.asarray(rng.normal(size=(2, 3, 224, 224)).astype(np.float32))
  f = model(x)
  assert f.shape == ((2, 256, 4 * 32) if kind == "dinov2_reg" else (2, 196, 4 * 32))
  assert np.isfinite(np.asarray(f)).all()
  if kind == "dinov2_reg":
    np.testing.assert_array_equal(model.blocks[1].scale1[...], tensors["encoder.layer.1.layer_scale1.lambda1"])
    # The 37x37 table is resized to the 16x16 grid of a 224 input.
    _, table = model._pos_table(16)
    assert table.shape == (256, 32)
  else:
    np.testing.assert_array_equal(model.pos_embed[...], tensors["vision_model.embeddings.position_embedding.weight"])
  # A wrong shape is named.
  bad = dict(tensors)
  key = next(k for k in bad if k.endswith("fc1.weight"))
  bad[key] = bad[key][:, :-1]
  with pytest.raises(ValueError, match="fc1.weight has shape"):
    oracle.extractor(cfg, bad, mesh=_one())


def test_antialias_matrix_rows_sum_to_one_and_widen():
  m = image_lib.bicubic_matrix_antialias(37, 16)
  np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
  assert (np.count_nonzero(m, axis=1) > 4).all()  # wider than the 4-tap kernel
  np.testing.assert_array_equal(image_lib.bicubic_matrix_antialias(16, 16), np.eye(16, dtype=np.float32))


def test_teachers_inside_an_official_state_dict(tmp_path):
  from autogaze_jax.weights import recon as recon_weights

  rng = np.random.default_rng(1)
  cfg = vit_config.siglip2_config("tiny")
  sd = {f"module.mae.siglip2.{k}": v for k, v in hf_towers.siglip(cfg, rng).items()}
  sd["module.mae.vit.embeddings.cls_token"] = np.zeros((1, 1, 4), np.float32)
  mae, teachers = recon_weights.split_official(sd)
  assert list(mae) == ["vit.embeddings.cls_token"]
  model = oracle.extractor(cfg, teachers, prefix="siglip2.", mesh=_one())
  key = "siglip2.vision_model.encoder.layers.2.mlp.fc2.bias"
  np.testing.assert_array_equal(model.blocks[2].fc2.bias[...], teachers[key])
