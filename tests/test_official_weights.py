import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from autogaze_jax import AutoGaze, checkpointing
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import gaze_config
from autogaze_jax.weights import gaze as gaze_weights


def _one_device():
  return mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])


def test_config_from_official_json(official_dir):
  cfg = gaze_weights.read_config_json(str(official_dir / "config.json"))
  ref = gaze_config.released_config()
  assert tuple(cfg.scales) == ref.scales
  assert cfg.decoder.to_dict() == ref.decoder.to_dict()
  assert cfg.vision.to_dict() == ref.vision.to_dict()
  assert cfg.inference.gazing_ratio == 0.75 and cfg.inference.task_loss_requirement == 0.7


def test_shape_mismatch_names_parameter_and_shapes(official_dir, tmp_path):
  tensors = load_file(str(official_dir / "model.safetensors"))
  name = "gazing_model.gaze_decoder.model.layers.2.mlp.up_proj.weight"
  tensors[name] = np.zeros((383, 192), np.float32)
  save_file(tensors, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((official_dir / "config.json").read_text())
  with pytest.raises(ValueError, match=r"layers\.2\.mlp\.up_proj\.weight has shape \(383, 192\).*\(192, 384\)"):
    AutoGaze.from_pretrained(str(tmp_path), mesh=_one_device())


def test_missing_and_unexpected_parameters(official_dir, tmp_path):
  tensors = load_file(str(official_dir / "model.safetensors"))
  del tensors["gazing_model.connector.pos_embed"]
  save_file(tensors, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((official_dir / "config.json").read_text())
  with pytest.raises(ValueError, match="missing parameter gazing_model.connector.pos_embed"):
    AutoGaze.from_pretrained(str(tmp_path), mesh=_one_device())
  # A K=10 checkpoint against a config that says K=5: the lm_head does not fit.
  hf = json.loads((official_dir / "config.json").read_text())
  hf["gaze_model_config"]["gaze_decoder_config"]["num_multi_token_pred"] = 5
  d2 = tmp_path / "k5"
  d2.mkdir()
  (d2 / "model.safetensors").symlink_to(official_dir / "model.safetensors")
  (d2 / "config.json").write_text(json.dumps(hf))
  with pytest.raises(ValueError, match=r"lm_head.weight has shape \(2660, 192\)"):
    AutoGaze.from_pretrained(str(d2), mesh=_one_device())


def test_unreadable_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="no model.safetensors"):
    AutoGaze.from_pretrained(str(tmp_path))
  bad = tmp_path / "model.safetensors"
  bad.write_bytes(b"not a safetensors file")
  with pytest.raises(ValueError, match="cannot read"):
    AutoGaze.from_pretrained(str(bad), mesh=_one_device())


def test_orbax_round_trip_and_no_overwrite(official_model, tmp_path):
  path = tmp_path / "ckpt"
  official_model.save(str(path))
  assert checkpointing.is_checkpoint(str(path))
  back = AutoGaze.from_pretrained(str(path), mesh=_one_device())
  for a, b in zip(jax.tree.leaves(official_model.params), jax.tree.leaves(back.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(FileExistsError):
    official_model.save(str(path))


def test_params_carry_logical_axes_and_shard_by_rules():
  mesh = mesh_lib.make_mesh((4, 2))
  g = AutoGaze.from_config(gaze_config.tiny_config(), mesh=mesh)
  model = g.model
  q = model.gaze_decoder.layers[0].self_attn.q_proj.kernel
  assert q.get_metadata()["out_sharding"] == ("embed", "heads")
  spec = q[...].sharding.spec
  assert tuple(spec) == ("fsdp", None)
  emb = model.gaze_decoder.embed_tokens.embedding[...]
  assert tuple(emb.sharding.spec) == (None, "fsdp")
  mesh8 = mesh_lib.make_mesh((8, 1))
  g8 = AutoGaze.from_config(gaze_config.tiny_config(), mesh=mesh8)
  assert g8.model.gaze_decoder.layers[0].self_attn.q_proj.kernel[...].sharding.mesh.shape["data"] == 8
