"""One NTP training step against the official code's (reference `train_ntp_seed0*`): labels in
the official format, pads between real gazes included, go through our labels reader and
collate into our loss; per-slot outputs, per-clip losses and every parameter's gradient must
match. Sizes and settings come from the reference files, so another reference folder of the
same layout runs unchanged (AUTOGAZE_REFERENCE_DIR)."""

import jax
import numpy as np
import pytest
from flax import nnx
from helpers.reference_steps import (
  assert_grads_close,
  compile_optimised,
  gaze_model,
  inputs,
  load_case,
  official_flag,
  official_layout,
  reference_grads,
)

from autogaze_jax.data import labels
from autogaze_jax.models import scoring
from autogaze_jax.train.ntp import step as ntp_step

NAME = "train_ntp_seed0"
TOL = {"rtol": 1e-4, "atol": 1e-4}  # the reference README's tolerances for this file
GRAD_REL = 1e-3


def official_label_entries(case) -> dict:
  """The per-clip label lists the reference collated, recovered from its collated arrays: frame
  t of clip b is the first label_len[b, t] slots of the frame (pads -1 between gazes kept)."""
  pos, losses, n_t = case["gazing_pos"], case["task_losses"], case["num_gazing_each_frame"]
  starts = np.concatenate([[0], np.cumsum(n_t)[:-1]])
  entries = {}
  for b, lens in enumerate(case["label_len_each_frame"]):
    entries[f"clip{b}"] = {
      "gazing_pos": [pos[b, s : s + n].tolist() for s, n in zip(starts, lens)],
      "task_losses": [losses[b, s : s + n].tolist() for s, n in zip(starts, lens)],
    }
  return entries


@pytest.fixture(scope="module")
def step(parity_dir):
  case, step_cfg = load_case(parity_dir, NAME)
  video, _ = inputs(parity_dir, case)
  cfg, model = gaze_model(parity_dir, step_cfg)
  vocab, k = cfg.num_vision_tokens_each_frame, cfg.decoder.num_multi_token_pred
  entries = official_label_entries(case)
  # Our static cap holds every label; to compare per-slot outputs on the official layout it must
  # also hold the official collate's extra slot (longest list + 1).
  slots = max(labels.slot_cap(entries, k), k * -(-int(case["num_gazing_each_frame"].max()) // k))
  collated = labels.collate(list(entries.values()), vocab, slots)
  batch = {"video": video, "ids": collated["ids"], "lens": collated["lens"], "task_losses": collated["task_losses"]}
  optimize_tlp = official_flag(step_cfg["algorithm"], "optimize_task_loss_prediction")
  graph, params, rest = nnx.split(model, nnx.Param, ...)

  def run(p, batch):
    loss_fn = lambda q: ntp_step.loss(nnx.merge(graph, q, rest), batch, optimize_tlp=optimize_tlp)
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    m = nnx.merge(graph, p, rest)
    per_clip_ntp, per_clip_tlp, mask = ntp_step.loss_terms(m, batch["video"], batch["ids"], batch["lens"],
                                                      batch["task_losses"])
    log_p, pred = scoring.score(m, batch["video"], batch["ids"], batch["lens"])
    return {"loss": loss, "grads": grads, "ntp": per_clip_ntp, "tlp": per_clip_tlp, "mask": mask, "log_p": log_p, "pred": pred}

  out = jax.device_get(compile_optimised(run, params, batch)(params, batch))
  out["optimize_tlp"] = optimize_tlp
  return case, cfg, params, entries, collated, out


def test_labels_keep_the_pads_between_gazes(step):
  case, cfg, _, entries, collated, out = step
  inner = [(b, t, j) for b, e in enumerate(entries.values()) for t, fr in enumerate(e["gazing_pos"])
           for j, g in enumerate(fr) if g == labels.PAD_ID]
  assert sorted(inner) == sorted(map(tuple, case["midpads_clip_frame_pos"].tolist()))
  for b, t, j in inner:  # the pad keeps its slot, so the gazes after it keep their place in the blocks of K
    assert collated["ids"][b, t, j] == cfg.num_vision_tokens_each_frame
  # Our loss mask is exactly the official ~if_padded_gazing (the +1 EOS slot and every pad out).
  np.testing.assert_array_equal(official_layout(out["mask"], case["num_gazing_each_frame"]) > 0,
                                ~case["if_padded_gazing"])


def test_per_slot_outputs_match(step):
  case, _, _, _, _, out = step
  n_t = case["num_gazing_each_frame"]
  assert out["log_p"].shape[-1] >= n_t.max()
  np.testing.assert_allclose(official_layout(out["log_p"], n_t), case["log_action_probs"], **TOL)
  np.testing.assert_allclose(official_layout(out["pred"], n_t), case["task_loss_prediction"], **TOL)


def test_losses_match(step):
  case, _, _, _, _, out = step
  np.testing.assert_allclose(out["ntp"], case["ntp_loss"], **TOL)
  np.testing.assert_allclose(out["tlp"], case["task_loss_prediction_loss"], **TOL)
  total = out["ntp"] + out["tlp"] if out["optimize_tlp"] else out["ntp"]
  np.testing.assert_allclose(total, case["loss_each_clip"], **TOL)
  np.testing.assert_allclose(out["loss"], case["loss"], **TOL)


def test_gradients_match(step, parity_dir):
  _case, cfg, params, _, _, out = step
  ratios = assert_grads_close(out["grads"], reference_grads(parity_dir, NAME, params, cfg), GRAD_REL)
  worst = max(ratios, key=ratios.get)
  print(f"\nNTP gradients: worst {'/'.join(map(str, worst))} at {ratios[worst]:.2e} of its max")
