"""Our gazed SigLIP tower against the official AutoGaze gazed SigLIP (reference
`vit_siglip_gazed_seed0*`): the per-scale position tables, the hidden states of every real
slot in each attention mode the official code runs (block-causal and frame-independent on
sdpa; causal and bidirectional through its flash-attention path), and the dense tower against
transformers' own SigLIP on the same weights. Sizes and modes come from the files."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import gazed_vit, vit_config
from autogaze_jax.weights import hf_vit

TOL = {"rtol": 1e-4, "atol": 1e-4}  # the reference README's tolerance for this file
NAME = "vit_siglip_gazed_seed0"


@pytest.fixture(scope="module")
def tower(parity_dir):
  meta = json.loads((parity_dir / f"{NAME}_config.json").read_text())
  hf = meta["hf_config"]
  cfg = vit_config.config_from_hf(hf)
  cfg.update({"image_size": int(hf["image_size"]), "scales": tuple(sorted(int(s) for s in hf["scales"].split("+"))),
              "attn_type": "block_causal", "token_bucket": 128})
  model = hf_vit.build_gazed_vit(cfg, load_file(str(parity_dir / f"{NAME}.safetensors")),
                          mesh=mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  return meta, model, np.load(parity_dir / f"{NAME}_expected.npz")


def _our_mode(mode: dict) -> str:
  return "frame_independent" if mode["frame_independent_encoding"] else mode["attn_type"]


def test_position_table_at_every_scale(tower):
  _, model, ref = tower
  np.testing.assert_allclose(model.position_table(), ref["position_embeddings_each_scale"], **TOL)


def test_gazed_embeddings(tower):
  _, model, ref = tower
  pos, pad, _ = gazed_vit.pack_gazes(ref["gazing_pos"], ref["if_padded_gazing"], ref["num_gazing_each_frame"])
  n = ref["gazing_pos"].shape[1]
  got = np.asarray(jax.jit(model.embed)(ref["pixel_values"], pos, pad))[:, :n]
  np.testing.assert_allclose(got, ref["embeddings"], **TOL)  # padded slots too: token 0's embedding


def test_hidden_states_and_pooled_output_in_every_saved_mode(tower):
  """Real slots' hidden states, and the pooled output, which the official head takes over the
  padded slots' rows as well: it matches only if those rows are computed the official way.
  The modes (attention type, frame-independent flag) are the reference's own list."""
  meta, model, ref = tower
  pos, pad, fid = gazed_vit.pack_gazes(ref["gazing_pos"], ref["if_padded_gazing"], ref["num_gazing_each_frame"])
  n, t = ref["gazing_pos"].shape[1], ref["pixel_values"].shape[1]
  real = ~ref["if_padded_gazing"]
  assert (~real).any()  # the case has pads between real gazes
  saved = {name: mode for name, mode in meta["modes"].items() if mode["saved"]}
  assert {_our_mode(m) for m in saved.values()} == set(gazed_vit.PAD_ROWS_OF_ATTN_TYPE)  # every mode we offer
  def run(pixels, pos, pad, fid, attn_type):
    hidden = model(pixels, pos, pad, fid, attn_type=attn_type)
    return hidden, model.pool(hidden, fid, t)

  run = jax.jit(run, static_argnames="attn_type")
  for name, mode in saved.items():
    hidden, pooled = run(ref["pixel_values"], pos, pad, fid, attn_type=_our_mode(mode))
    np.testing.assert_allclose(np.asarray(hidden)[:, :n][real], ref[f"{name}_last_hidden_state"][real], **TOL,
                               err_msg=name)
    np.testing.assert_allclose(pooled, ref[f"{name}_pooler_output"], **TOL, err_msg=name)


def test_dense_tower_matches_transformers(tower):
  _, model, ref = tower
  frames = ref["pixel_values"][0]  # (T, 3, H, W): each frame as one image

  def run(x):
    hidden = model.dense(x)
    return hidden, model.head(hidden)

  hidden, pooled = jax.jit(run)(frames)
  np.testing.assert_allclose(hidden[None], ref["dense_hf_last_hidden_state"], **TOL)
  np.testing.assert_allclose(pooled[None], ref["dense_hf_pooler_output"], **TOL)
