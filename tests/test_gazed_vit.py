"""The gazed SigLIP ViT: HF import, equality with the stock ViT on full gazes, padding
invariance, attention types, patch order, and sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import hf_towers
from safetensors.numpy import load_file, save_file

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import gazed_vit, vit_blocks, vit_config
from autogaze_jax.models.patches import patchify
from autogaze_jax.weights import hf_vit

V = 265  # tiny: scales 32+64+112+224 with 16-px patches -> 4+16+49+196
FINE = np.arange(69, V)  # every patch of the 224 scale


def _one():
  return mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def hf_file(tmp_path_factory):
  cfg = vit_config.vit_config("tiny")
  tensors = hf_towers.siglip(cfg, np.random.default_rng(0))
  tensors["vision_model.post_layernorm.weight"] = 1 + tensors["vision_model.post_layernorm.weight"]
  tensors["vision_model.post_layernorm.bias"] = np.full((cfg.hidden,), 0.1, np.float32)
  tensors["text_model.embeddings.token_embedding.weight"] = np.zeros((8, 4), np.float32)  # ignored
  path = tmp_path_factory.mktemp("vit") / "model.safetensors"
  save_file(tensors, str(path))
  return path


@pytest.fixture(scope="module")
def model(hf_file):
  return hf_vit.build_gazed_vit(vit_config.vit_config("tiny"), load_file(str(hf_file)), mesh=_one())


@pytest.fixture(scope="module")
def pixels():
  return jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 3, 3, 224, 224)).astype(np.float32))


def _run(model, pixels, pos, pad, n_t, attn_type, bucket=128):
  p, pd, f = gazed_vit.pack_gazes(pos, pad, n_t, bucket)
  return np.asarray(model(pixels, jnp.asarray(p), jnp.asarray(pd), jnp.asarray(f), attn_type))


def test_weights_come_from_the_file(model, hf_file):
  t = load_file(str(hf_file))
  np.testing.assert_array_equal(model.post_layernorm.bias[...], t["vision_model.post_layernorm.bias"])
  np.testing.assert_array_equal(model.pos_embed[...], t["vision_model.embeddings.position_embedding.weight"])
  np.testing.assert_array_equal(model.blocks[1].fc2.kernel[...], t["vision_model.encoder.layers.1.mlp.fc2.weight"].T)


def test_patch_order_equals_conv2d_embedding(model, pixels):
  x = pixels[0, :1]
  w = model.patch_proj.kernel[...].T.reshape(-1, 3, 16, 16)  # (D, C, kh, kw), torch's OIHW
  conv = jax.lax.conv_general_dilated(x, w, (16, 16), "VALID", precision="highest")
  conv = conv.reshape(1, w.shape[0], -1).transpose(0, 2, 1) + model.patch_proj.bias[...]
  np.testing.assert_allclose(model.patch_proj(patchify(x, 16)), conv, atol=1e-5)


@pytest.mark.parametrize("attn_type", ["frame_independent", "block_causal"])
def test_full_finest_gazes_equal_the_stock_vit(model, pixels, attn_type):
  t = 2 if attn_type == "frame_independent" else 1  # block-causal = per frame only for T = 1
  pos = np.concatenate([FINE + f * V for f in range(t)])[None].repeat(2, 0)
  out = _run(model, pixels[:, :t], pos, np.zeros_like(pos, bool), [196] * t, attn_type)
  dense = np.asarray(model.dense(pixels[:, :t].reshape(-1, 3, 224, 224)))
  np.testing.assert_allclose(out[:, : 196 * t].reshape(-1, 196, 32), dense, atol=1e-5)
  # The same against FeatureViT's own forward (last hidden state + post-LN).
  ref = model.post_layernorm(model.features(pixels[0, :1])[..., -32:])
  np.testing.assert_allclose(out[0, :196], np.asarray(ref[0]), atol=1e-5)


def test_coarse_scale_gazes_see_the_resized_frame(model, pixels):
  from autogaze_jax import image as image_lib

  pos = np.arange(20, 69)[None]  # the whole 112 scale (7x7) of frame 0
  out = _run(model, pixels[:1, :1], pos, np.zeros_like(pos, bool), [49], "bidirectional")
  small = image_lib.resize_bicubic(pixels[0, :1], (112, 112))
  np.testing.assert_allclose(out[0, :49], np.asarray(model.dense(small))[0], atol=1e-5)


def test_padded_slots_do_not_change_real_tokens(model, pixels):
  rng = np.random.default_rng(2)
  real = [np.sort(rng.choice(V, 12, replace=False)) + f * V for f in range(3)]
  pos = np.concatenate(real)[None].repeat(2, 0)
  base = _run(model, pixels, pos, np.zeros_like(pos, bool), [12] * 3, "block_causal")
  # Four padded slots per frame holding arbitrary ids (the official PAD ids), and a bigger bucket.
  padded = np.concatenate([np.concatenate([r, rng.integers(0, 3 * V, 4)]) for r in real])[None].repeat(2, 0)
  is_pad = np.tile(np.r_[np.zeros(12, bool), np.ones(4, bool)], 3)[None].repeat(2, 0)
  out = _run(model, pixels, padded, is_pad, [16] * 3, "block_causal", bucket=256)
  np.testing.assert_allclose(out[:, :48][:, ~is_pad[0]], base[:, :36], atol=1e-5)


def test_attention_masks():
  fid = jnp.asarray([[0, 0, 1, 2, 2, 3]])
  pad = jnp.asarray([[False, False, True, False, False, True]])
  m = {a: np.asarray(gazed_vit.attention_mask(a, fid, pad))[0].astype(int) for a in vit_config.ATTN_TYPES}
  assert m["block_causal"].tolist() == [
    [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
    [1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0]]
  assert m["frame_independent"].tolist() == [
    [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]]
  assert m["causal"].tolist() == [
    [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
    [1, 1, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0]]
  assert m["bidirectional"].tolist() == [[1, 1, 0, 1, 1, 0]] * 6
  with pytest.raises(ValueError, match="attn_type: 'full' is not one of"):
    gazed_vit.attention_rule("full", fid)


@pytest.mark.parametrize("attn_type,changes_frame0,changes_frame2", [
  ("block_causal", False, True), ("frame_independent", False, False),
  ("causal", False, True), ("bidirectional", True, True),
])
def test_attention_types_in_the_model(model, pixels, attn_type, changes_frame0, changes_frame2):
  pos = np.concatenate([np.arange(60, 70) + f * V for f in range(3)])[None]
  run = lambda px: _run(model, px, pos, np.zeros_like(pos, bool), [10] * 3, attn_type)
  base = run(pixels[:1])
  out = run(pixels[:1].at[:, 1].multiply(-1.0))  # change frame 1 only
  moved = lambda sl: not np.allclose(out[0, sl], base[0, sl], atol=1e-6)
  assert moved(slice(10, 20))
  assert moved(slice(0, 10)) == changes_frame0
  assert moved(slice(20, 30)) == changes_frame2


@pytest.mark.parametrize("pad_rows", vit_blocks.PAD_ROW_MODES)
def test_pad_row_modes_equal_an_explicit_mask_chunked_or_not(pad_rows):
  """Each way of computing padded rows against a mask written out by hand, in one pass and
  in query chunks (the path long so400m sequences take)."""
  rng = np.random.default_rng(0)
  b, n, h, d = 2, 11, 2, 4
  q, k, v = (rng.normal(size=(b, n, h, d)).astype(np.float32) for _ in range(3))
  fid = np.sort(rng.integers(0, 4, (b, n)), axis=1).astype(np.int32)
  pad = rng.random((b, n)) < 0.3
  pad[:, 0] = False
  pad[0, 5] = True
  one = vit_blocks.block_causal_attention(q, k, v, fid, fid, pad, query_chunk=64, pad_rows=pad_rows)
  chunked = vit_blocks.block_causal_attention(q, k, v, fid, fid, pad, query_chunk=3, pad_rows=pad_rows)
  np.testing.assert_allclose(chunked, one, rtol=1e-5, atol=1e-6)
  i, j = np.arange(n)[:, None], np.arange(n)[None, :]
  keep = (fid[:, None, :] <= fid[:, :, None]) & ~pad[:, None, :]
  if pad_rows == "self":
    keep |= (i == j)[None]
  if pad_rows == "last":
    keep = np.where(pad[:, :, None], ~pad[:, None, :] | (j <= i)[None], keep)
  s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
  s = np.where(keep[:, None], s, np.finfo(np.float32).min).astype(np.float64)
  p = np.exp(s - s.max(-1, keepdims=True))
  want = np.einsum("bhqk,bkhd->bqhd", p / p.sum(-1, keepdims=True), v)
  if pad_rows == "zero":
    want = np.where(pad[:, :, None, None], 0.0, want)
  np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-6)
  if pad_rows != "masked":  # real rows never change with the pad-row mode
    base = vit_blocks.block_causal_attention(q, k, v, fid, fid, pad, pad_rows="masked")
    np.testing.assert_array_equal(np.asarray(one)[~pad], np.asarray(base)[~pad])


def test_a_mismatched_file_names_the_parameter(hf_file):
  t = load_file(str(hf_file))
  t["vision_model.embeddings.position_embedding.weight"] = np.zeros((100, 32), np.float32)
  with pytest.raises(ValueError, match=r"position_embedding.weight has shape \(100, 32\).*expects \(196, 32\)"):
    hf_vit.build_gazed_vit(vit_config.vit_config("tiny"), t, mesh=_one())
  del t["vision_model.post_layernorm.bias"]
  with pytest.raises(ValueError, match="missing parameter vision_model.post_layernorm.bias"):
    hf_vit.build_gazed_vit(vit_config.vit_config("tiny"), t, mesh=_one())


def test_sharded_over_a_4x2_mesh_equals_one_device(hf_file, model):
  tensors = load_file(str(hf_file))
  mesh = mesh_lib.make_mesh((4, 2))
  sharded = hf_vit.build_gazed_vit(vit_config.vit_config("tiny"), tensors, mesh=mesh)
  spec = sharded.blocks[0].fc1.kernel[...].sharding.spec
  assert spec[0] == "fsdp"  # "embed" -> fsdp by the rules table
  rng = np.random.default_rng(3)
  px = rng.uniform(-1, 1, (8, 2, 3, 224, 224)).astype(np.float32)
  pos = np.concatenate([np.sort(rng.choice(V, 20, replace=False)) + f * V for f in range(2)])[None].repeat(8, 0)
  p, pd, f = gazed_vit.pack_gazes(pos, np.zeros_like(pos, bool), [20, 20])
  graphdef, state = nnx.split(sharded)
  fn = jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a))
  with mesh_lib.use(mesh):
    args = [jax.device_put(a, mesh_lib.batch_sharding(mesh, a.ndim)) for a in (px, p, pd, f)]
    out = fn(state, *args)
  assert out.sharding.spec[0] == ("data", "fsdp")
  np.testing.assert_allclose(np.asarray(out), np.asarray(model(jnp.asarray(px), p, pd, f)), atol=1e-5)


def test_configs_and_the_so400m_layout():
  assert sum(vit_config.tokens_per_scale(vit_config.vit_config("base16_224"))) == 265
  cfg = vit_config.vit_config("so400m14_384")
  assert (cfg.hidden, cfg.layers, cfg.pos_grid) == (1152, 27, 27)
  assert vit_config.tokens_per_scale(cfg) == [16, 64, 196, 784]
  cfg.hidden, cfg.layers, cfg.heads, cfg.mlp = 16, 1, 2, 32  # the same geometry, tiny widths
  model = hf_vit.build_gazed_vit(cfg, mesh=_one())
  table = np.asarray(model.position_table())  # 27x27 resized to 4, 8, 14 and 28 (even 392: 28 != 27)
  assert table.shape == (1060, 16)
  from autogaze_jax import image as image_lib

  grid = np.asarray(model.pos_embed[...]).reshape(27, 27, 16)
  m = image_lib.bicubic_matrix(27, 28)
  np.testing.assert_allclose(table[276:], np.einsum("ih,hwd,jw->ijd", m, grid, m).reshape(784, 16), atol=1e-5)
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    vit_config.vit_config("huge")
