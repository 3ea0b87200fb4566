"""Exact parity with the official PyTorch AutoGaze on ../shared/data/parity (see its README)."""

import jax.numpy as jnp
import numpy as np
import pytest

from autogaze_jax.models.gaze import num_params

CASES = {
  "r010": dict(gazing_ratio=0.1),
  "r075": dict(gazing_ratio=0.75),
  "r075_tlrm055": dict(gazing_ratio=0.75, task_loss_requirement=-0.55),
}
TOL = dict(rtol=1e-4, atol=1e-4)


def test_parameter_count(official_model):
  assert num_params(official_model.model) == 3_258_240


def test_intermediates(official_model, parity_dir):
  clip = np.load(parity_dir / "clip16.npz")
  ref = np.load(parity_dir / "intermediates_seed0.npz")
  model = official_model.model
  video = jnp.asarray(clip["video"])
  x = jnp.transpose(video, (0, 1, 3, 4, 2))
  feats, _ = model.vision_model(x)
  np.testing.assert_allclose(jnp.transpose(feats, (0, 4, 1, 2, 3)), ref["vision_features"], **TOL)
  tokens, _ = model.encode(video)
  np.testing.assert_allclose(tokens, ref["video_embeds"], **TOL)
  # Frame 0's 196 embeddings alone, positions 0..195: logits and task-loss head.
  dec = model.gaze_decoder
  x0 = tokens[:, 0]
  empty = jnp.zeros((1, 6, 0, 32))
  h, _ = dec.trunk(x0, jnp.arange(196)[None], jnp.ones((1, 196), bool), [(empty, empty)] * 4, 0,
                   jnp.zeros((1, 0), bool))
  logits, tlp = dec.heads(h)
  np.testing.assert_allclose(logits.reshape(1, 196, -1), ref["frame0_prefill_logits"], **TOL)
  np.testing.assert_allclose(tlp, ref["frame0_prefill_task_loss_prediction"], **TOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gazes_and_teacher_forcing(official_model, parity_dir, case):
  clip = np.load(parity_dir / "clip16.npz")
  exp = np.load(parity_dir / f"expected_{case}.npz")
  out = official_model.gaze(clip["video"], **CASES[case])
  pad = exp["if_padded_gazing"]
  np.testing.assert_array_equal(out["num_gazing_each_frame"], exp["num_gazing_each_frame"])
  np.testing.assert_array_equal(out["if_padded_gazing"], pad)
  np.testing.assert_array_equal(out["gazing_pos"][~pad], exp["gazing_pos"][~pad])
  np.testing.assert_array_equal(out["num_real_gazing_each_frame"], exp["num_real_gazing_each_frame"])
  for s in range(4):
    np.testing.assert_array_equal(out["gazing_mask"][s], exp[f"gazing_mask_s{s}"])
  np.testing.assert_allclose(out["log_action_probs"], exp["log_action_probs"], **TOL)
  np.testing.assert_allclose(out["task_loss_prediction"], exp["task_loss_prediction"], **TOL)
  if "task_loss_requirement" in exp:
    np.testing.assert_allclose(out["task_loss_requirement"], exp["task_loss_requirement"])
    # The stop rule leaves PAD between real gazes of a frame in this case.
    starts = np.concatenate([[0], np.cumsum(exp["num_gazing_each_frame"])[:-1]])
    interior = [np.any(np.diff(pad[0, s : s + n].astype(int)) == -1)
                for s, n in zip(starts, exp["num_gazing_each_frame"])]
    assert any(interior)


def test_teacher_forcing_of_given_gazes(official_model, parity_dir):
  clip = np.load(parity_dir / "clip16.npz")
  exp = np.load(parity_dir / "expected_r075_tlrm055.npz")
  info = {k: exp[k] for k in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")}
  out = official_model.gaze(clip["video"], gazing_info=info)
  np.testing.assert_array_equal(out["gazing_pos"][~exp["if_padded_gazing"]],
                                exp["gazing_pos"][~exp["if_padded_gazing"]])
  np.testing.assert_allclose(out["log_action_probs"], exp["log_action_probs"], **TOL)
  np.testing.assert_allclose(out["task_loss_prediction"], exp["task_loss_prediction"], **TOL)


def test_uint8_frames_and_streaming_match(official_model, parity_dir):
  clip = np.load(parity_dir / "clip16.npz")
  exp = np.load(parity_dir / "expected_r010.npz")
  out = official_model.gaze(clip["raw_frames"][None], gazing_ratio=0.1, generate_only=True)
  np.testing.assert_array_equal(out["gazing_pos"], exp["gazing_pos"])
  assert out["log_action_probs"] is None
  stream = official_model.stream(1, gazing_ratio=0.1)
  got = np.concatenate([stream.step(clip["video"][:, t])["gazing_pos"] for t in range(16)], 1)
  np.testing.assert_array_equal(got, exp["gazing_pos"])


