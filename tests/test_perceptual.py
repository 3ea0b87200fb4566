"""Perceptual feature extractors: HF-layout import, feature shapes, and the loss plug-in."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import save_file

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import vit_config
from autogaze_jax.train import oracle


def _one():
  return mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])


def _hf_dinov2(cfg, rng):
  d, m = cfg.hidden, cfg.mlp
  t = {"embeddings.cls_token": (1, 1, d), "embeddings.mask_token": (1, d),
       "embeddings.register_tokens": (1, cfg.registers, d),
       "embeddings.position_embeddings": (1, 1 + cfg.pos_grid**2, d),
       "embeddings.patch_embeddings.projection.weight": (d, 3, 14, 14),
       "embeddings.patch_embeddings.projection.bias": (d,), "layernorm.weight": (d,), "layernorm.bias": (d,)}
  for i in range(cfg.layers):
    p = f"encoder.layer.{i}."
    for n in ("norm1", "norm2"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d,), (d,)
    for n in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
              "attention.output.dense"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d, d), (d,)
    t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = (m, d), (m,)
    t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = (d, m), (d,)
    t[p + "layer_scale1.lambda1"], t[p + "layer_scale2.lambda1"] = (d,), (d,)
  return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in t.items()}


def _hf_siglip(cfg, rng):
  d, m = cfg.hidden, cfg.mlp
  t = {"vision_model.embeddings.patch_embedding.weight": (d, 3, 16, 16),
       "vision_model.embeddings.patch_embedding.bias": (d,),
       "vision_model.embeddings.position_embedding.weight": (196, d),
       "vision_model.post_layernorm.weight": (d,), "vision_model.head.probe": (1, 1, d)}
  for i in range(cfg.layers):
    p = f"vision_model.encoder.layers.{i}."
    for n in ("layer_norm1", "layer_norm2"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d,), (d,)
    for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"):
      t[p + n + ".weight"], t[p + n + ".bias"] = (d, d), (d,)
    t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = (m, d), (m,)
    t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = (d, m), (d,)
  return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in t.items()}


@pytest.mark.parametrize("kind", ["dinov2_reg", "siglip2"])
def test_import_and_feature_shapes(kind, tmp_path):
  rng = np.random.default_rng(0)
  cfg = vit_config.dinov2_reg_config("tiny") if kind == "dinov2_reg" else vit_config.siglip2_config("tiny")
  tensors = (_hf_dinov2 if kind == "dinov2_reg" else _hf_siglip)(cfg, rng)
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
  sd = {f"module.mae.siglip2.{k}": v for k, v in _hf_siglip(cfg, rng).items()}
  sd["module.mae.vit.embeddings.cls_token"] = np.zeros((1, 1, 4), np.float32)
  mae, teachers = recon_weights.split_official(sd)
  assert list(mae) == ["vit.embeddings.cls_token"]
  model = oracle.extractor(cfg, teachers, prefix="siglip2.", mesh=_one())
  key = "siglip2.vision_model.encoder.layers.2.mlp.fc2.bias"
  np.testing.assert_array_equal(model.blocks[2].fc2.bias[...], teachers[key])
