"""One GRPO training step against the official code's (reference `train_grpo_seed0*`): the
official sampler's rollouts are fed as given (samplers cannot match across frameworks); the
rewards come out of our reconstructor and our perceptual teachers loaded from the reference's
weights, then our advantages, losses and gradients, all through `grpo_step.policy_update`,
the function our train step runs after sampling. Sizes and settings come from the reference
files (AUTOGAZE_REFERENCE_DIR)."""

import json

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
from safetensors.numpy import load_file

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.inference import outputs
from autogaze_jax.models import vit_config
from autogaze_jax.train import oracle
from autogaze_jax.train.grpo import rollout as rollout_lib
from autogaze_jax.train.grpo import step as grpo_step
from autogaze_jax.weights import recon as recon_weights

NAME = "train_grpo_seed0"
TOL = {"rtol": 1e-4, "atol": 1e-4}  # the reference README's tolerances for this file
ADV_ATOL, POLICY_ATOL, GRAD_REL = 2e-6, 1e-3, 5e-3


def reference_oracle(ref_dir, task: dict, mesh):
  """Our reconstructor and teachers from the reference task's weights, with its loss weights."""
  recon = recon_weights.load(str(ref_dir / task["mae_weights"]),
                             recon_weights.config_from_hf(task["mae_constructor_kwargs"]), mesh)
  kinds = task["loss"]["loss_type"].split("+")
  weights = [float(w) for w in task["loss"]["loss_weights"].split("+")]
  assert kinds[0] == "l1" and weights[0] == 1.0, f"our loss is 1 * l1 + perceptual terms, not {kinds}, {weights}"
  terms = []
  for kind, w in zip(kinds[1:], weights[1:]):
    file = task["towers"][kind]
    hf = json.loads((ref_dir / file.replace(".safetensors", "_config.json")).read_text())["hf_config"]
    terms.append((w, oracle.extractor(vit_config.config_from_hf(hf), load_file(str(ref_dir / file)), mesh=mesh)))
  return oracle.Oracle(recon, oracle.Teachers(terms)), kinds[1:]


@pytest.fixture(scope="module")
def step(parity_dir):
  case, step_cfg = load_case(parity_dir, NAME)
  assert official_flag(step_cfg["algorithm"], "optimize_task_loss_prediction")
  video, task_video = inputs(parity_dir, case)
  cfg, model = gaze_model(parity_dir, step_cfg)
  vocab, k = cfg.num_vision_tokens_each_frame, cfg.decoder.num_multi_token_pred
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  frozen, kinds = reference_oracle(parity_dir, step_cfg["task"], mesh)
  g, b = int(case["group_size"]), video.shape[0]
  # Reference rollout r belongs to clip rollout_clip_index[r]; ours are [clip, member].
  clip_of = case["rollout_clip_index"]
  order = np.concatenate([np.flatnonzero(clip_of == c) for c in range(b)])  # ref row of our row c * G + m
  assert order.shape == (b * g,)
  ids, lens = outputs.from_official(case["gazing_pos"], case["if_padded_gazing"], case["num_gazing_each_frame"],
                                    vocab, k)
  ids, lens = ids[order].reshape((b, g) + ids.shape[1:]), lens[order].reshape(b, g, -1)
  frames = np.broadcast_to(case["frame_idx_to_reconstruct"][None], (b, case["frame_idx_to_reconstruct"].size))
  # Official behaviour: one set of rewarded frames for the batch; the saved rollouts are
  # given, so the budget settings only size the spec. group_chunk 1 scores one member of each
  # clip at a time (the same step; it bounds the memory of 224-px scoring here).
  rspec = rollout_lib.make_spec(vocab, k, group_size=g, pilot_ratio=float(case["gazing_ratio"]),
                                 eps_range=(float(case["task_loss_requirement"]),) * 2,
                                 recon_sample_rate=float(step_cfg["task"]["recon_sample_rate"]),
                                 group_chunk=1, shared_draws=True)
  spec = grpo_step.StepSpec(rspec, float(case["discount_factor"]), float(case["temperature"]),
                            float(case["temperature"]), 1)
  graph, params, rest = nnx.split(model, nnx.Param, ...)
  frozen_def, frozen_state = nnx.split(frozen)

  def run(p, fs, video, task_video, ids, lens, frames):
    frozen_oracle = nnx.merge(frozen_def, fs)
    recon, terms = frozen_oracle.recon, frozen_oracle.terms()
    return grpo_step.policy_update(nnx.merge(graph, p, rest), video, task_video, ids, lens, frames, recon, terms, spec)

  args = (params, frozen_state, video, task_video, ids, lens, np.asarray(frames, np.int32))
  grads, out = jax.device_get(compile_optimised(run, *args)(*args))
  return case, cfg, params, order, kinds, spec, grads, out


def _rows(x):
  """Our (B, G, ...) -> rows c * G + m."""
  x = np.asarray(x)
  return x.reshape((-1,) + x.shape[2:])


def test_rewards_come_out_of_our_reconstructor_and_teachers(step):
  case, _, _, order, kinds, _, _, out = step
  rew = out["rewards"]
  np.testing.assert_allclose(_rows(rew["reward"]), case["rewards"][order], **TOL)
  np.testing.assert_allclose(_rows(rew["loss"]), case["recon_loss_each_frame"][order], **TOL)
  np.testing.assert_allclose(_rows(rew["loss"]).mean(-1), case["recon_loss_mean"][order], **TOL)
  np.testing.assert_allclose(_rows(rew["l1"]), case["reward_l1"][order], **TOL)
  for i, kind in enumerate(kinds):
    np.testing.assert_allclose(_rows(rew["perceptual"][..., i]), case[f"reward_{kind}"][order], **TOL, err_msg=kind)


def test_task_loss_targets_and_mask(step):
  case, _, _, order, _, _, _, out = step
  n_t, n = case["num_gazing_each_frame"], order.size
  rew = out["rewards"]
  np.testing.assert_array_equal(official_layout(_rows(rew["target_mask"]).reshape(n, -1), n_t),
                                case["task_losses_mask"][order])
  np.testing.assert_allclose(official_layout(_rows(rew["targets"]).reshape(n, -1), n_t),
                             case["task_losses"][order], **TOL)


def test_teacher_forced_outputs(step):
  case, _, _, order, _, _, _, out = step
  n_t = case["num_gazing_each_frame"]
  np.testing.assert_array_equal(official_layout(out["real"], n_t), ~case["if_padded_gazing"][order])
  np.testing.assert_allclose(official_layout(out["log_probs"], n_t), case["log_action_probs"][order], **TOL)
  np.testing.assert_allclose(official_layout(out["task_loss_prediction"], n_t), case["task_loss_prediction"][order],
                             **TOL)


def test_discounted_advantages(step):
  case, _, _, order, _, _, _, out = step
  n_t = case["num_gazing_each_frame"]
  np.testing.assert_allclose(official_layout(out["advantages"], n_t), case["advantages"][order], rtol=0, atol=ADV_ATOL)
  # Each reward's part alone: group-centred (no std), discounted over real slots up to its frame.
  each = out["advantages_each_reward"]  # (N, R, T * S)
  assert each.shape[1] == case["advantages_each_reward"].shape[0]
  for r in range(each.shape[1]):
    np.testing.assert_allclose(official_layout(each[:, r], n_t), case["advantages_each_reward"][r][order], rtol=0,
                               atol=ADV_ATOL, err_msg=f"reward {r}")


def test_losses(step):
  case, _, _, order, _, _, _, out = step
  pg, tl = out["grpo_loss_each_rollout"], out["task_loss_prediction_loss_each_rollout"]
  np.testing.assert_allclose(pg, case["grpo_loss"][order], rtol=0, atol=POLICY_ATOL)
  np.testing.assert_allclose(tl, case["task_loss_prediction_loss"][order], **TOL)
  np.testing.assert_allclose(pg + tl, case["loss_each_rollout"][order], rtol=1e-4, atol=POLICY_ATOL)
  np.testing.assert_allclose(out["loss"], case["loss"], rtol=1e-4, atol=POLICY_ATOL)


def test_gradients(step, parity_dir):
  _case, cfg, params, _, _, _, grads, _ = step
  ratios = assert_grads_close(grads, reference_grads(parity_dir, NAME, params, cfg), GRAD_REL)
  worst = max(ratios, key=ratios.get)
  print(f"\nGRPO gradients: worst {'/'.join(map(str, worst))} at {ratios[worst]:.2e} of its max")
