"""GRPO: advantages (the worked example of docs/design.md, "GRPO"), policy loss, temperature, rollouts, the jitted
train step (learning, sharding, NaN guard), the frozen reconstructor loader, the stage."""

import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import make_tiny
from flax import nnx

from autogaze_jax import AutoGaze
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import synthetic
from autogaze_jax.models import gaze_config, recon_config, vit_config
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import loop, metric_log, optim, oracle
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.grpo import advantages
from autogaze_jax.train.grpo import rollout as rollout_lib
from autogaze_jax.train.grpo import step as grpo_step
from autogaze_jax.train.grpo import trainer as grpo_trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
V, K = 20, 3
B, G, T = 8, 2, 2  # clips per step, group size, frames


def test_advantages_match_the_worked_example():
  # The worked example of docs/design.md, "GRPO": 2 frames of 3 real gazes, gamma 0.5, A = +1 at frame 0 (L=3), A' = -2 at frame 1 (L=6).
  adv = advantages.discounted_advantages(jnp.array([[1.0, -2.0]]), jnp.ones((1, 6), bool), jnp.array([[3, 6]]), 0.5)
  np.testing.assert_allclose(adv[0], [0.1875, 0.375, 0.75, -0.5, -1.0, -2.0], rtol=1e-6)
  # The same trajectory in fixed-shape frames of 4 slots: unused/PAD slots get nothing and do
  # not count in the distances.
  real = jnp.array([[1, 1, 1, 0, 1, 1, 1, 0]], bool)
  adv = advantages.discounted_advantages(jnp.array([[1.0, -2.0]]), real, jnp.array([[4, 8]]), 0.5)
  np.testing.assert_allclose(adv[0], [0.1875, 0.375, 0.75, 0, -0.5, -1.0, -2.0, 0], rtol=1e-6)
  # A PAD between real gazes (ε stop) is skipped too.
  real = jnp.array([[1, 0, 1, 1]], bool)
  adv = advantages.discounted_advantages(jnp.array([[1.0]]), real, jnp.array([[4]]), 0.5)
  np.testing.assert_allclose(adv[0], [0.25, 0, 0.5, 1.0], rtol=1e-6)


def test_group_baseline_has_no_std_division():
  r = jnp.array([[[1.0, 0.0], [3.0, 0.0], [5.0, 3.0]]])  # (B=1, G=3, R=2)
  np.testing.assert_allclose(advantages.group_centered(r)[0], [[-2, -1], [0, -1], [2, 2]])
  np.testing.assert_array_equal(advantages.repeat_groups(jnp.arange(2), 3), [0, 0, 0, 1, 1, 1])


def test_policy_loss_equals_direct_computation():
  rng = np.random.default_rng(0)
  n, L = 3, 5
  logp = jnp.asarray(-rng.uniform(0.1, 3, (n, L)), jnp.float32)
  pred, target = (jnp.asarray(rng.uniform(0, 2, (n, L)), jnp.float32) for _ in range(2))
  adv = jnp.asarray(rng.normal(size=(n, L)), jnp.float32)
  real = jnp.asarray(rng.random((n, L)) < 0.8)
  tmask = jnp.zeros((n, L)).at[:, -1].set(1.0).at[0, 2].set(1.0)
  loss, pg, tl = advantages.policy_loss(logp, pred, adv, real, target, tmask)
  r, tm = np.asarray(real, np.float64), np.asarray(tmask) * np.asarray(real)
  want_pg = -(np.asarray(adv) * r).sum(1)
  want_tl = (tm * (np.asarray(pred) - np.asarray(target)) ** 2).sum(1) / (tm.sum() / n + 1e-6)
  np.testing.assert_allclose([pg, tl, loss], [want_pg.mean(), want_tl.mean(), (want_pg + want_tl).mean()], rtol=1e-5)
  # REINFORCE: the gradient w.r.t. log p is -adv on real slots, per trajectory sum / N rows.
  grad = jax.grad(lambda lp: advantages.policy_loss(lp, pred, adv, real, target, tmask)[0])(logp)
  np.testing.assert_allclose(grad, -np.asarray(adv) * r / n, rtol=1e-6)


def test_shared_draws_give_every_clip_the_same_eps_and_frames():
  key = jax.random.key(4)
  for shared in (False, True):
    spec = rollout_lib.make_spec(V, K, group_size=2, pilot_ratio=0.75, eps_range=(0.5, 1.0), recon_sample_rate=0.25,
                                  shared_draws=shared)
    eps = np.asarray(rollout_lib.draw_eps(key, 8, spec))
    frames = np.asarray(rollout_lib.reward_frames(key, 8, 16, spec.recon_sample_rate, spec.shared_draws))
    assert frames.shape == (8, 4) and all(len(set(row)) == 4 for row in frames.tolist())
    assert 0.5 <= eps.min() and eps.max() <= 1.0
    if shared:
      assert len(set(eps.tolist())) == 1 and (frames == frames[:1]).all()
    else:
      assert len(set(eps.tolist())) == 8 and len({tuple(r) for r in frames.tolist()}) > 1


def test_temperature_schedule():
  taus = [float(advantages.temperature(s, 3.0, 0.3, 100)) for s in (0, 50, 100)]
  np.testing.assert_allclose(taus, [3.0, 3.0 * 0.1**0.5, 0.3], rtol=1e-6)


def test_rollouts_differ_within_a_group_and_repeat_for_a_key():
  tiny = make_tiny()
  spec = rollout_lib.make_spec(V, K, group_size=4, pilot_ratio=0.75, eps_range=(-0.2, 0.4),
                                recon_sample_rate=0.5)
  video = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 3, 64, 64)), jnp.float32)
  run = jax.jit(lambda p, v, k: rollout_lib.rollout(nnx.merge(tiny.graphdef, p), v, k, 2.0, spec))
  with mesh_lib.use(tiny.mesh):
    a, again, other = (jax.device_get(run(tiny.params, video, jax.random.key(s))) for s in (0, 0, 1))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(again)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a["ids"], other["ids"])
  ids, lens, budgets = a["ids"], a["lens"], a["budgets"]
  assert ids.shape == (2, 4, 3, spec.slots) and 1 <= budgets.min() and budgets.max() <= spec.pilot_cap == 15
  real = np.asarray(rollout_lib.real_slots(ids, lens, V))
  np.testing.assert_array_equal(real.sum(-1), np.broadcast_to(budgets[:, None], (2, 4, 3)))  # no PAD
  for b in range(2):
    assert len({ids[b, g].tobytes() for g in range(4)}) > 1  # members differ
    for g in range(4):
      for t in range(3):
        frame = ids[b, g, t][real[b, g, t]]
        assert len(set(frame.tolist())) == len(frame)  # no repeats within a frame


def _opt(lr=0.05):
  """SGD, so that updates are proportional to gradients (Adam would blow float noise up)."""
  return ml_collections.ConfigDict(dict(name="sgd", lr=lr))


def _cfg(teacher=False, group_chunk=0):
  """configs/grpo.py:tiny shrunk to the test's shapes; SGD; a random SigLIP-layout teacher at
  weight 0.3 in the oracle if `teacher`."""
  cfg = config_files.load(f"{ROOT}/configs/grpo.py:tiny")
  cfg.gaze = gaze_config.tiny_config()
  cfg.optimizer, cfg.steps = _opt(), 10
  cfg.batch_size, cfg.clip_len = B, T
  cfg.grpo.update(dict(group_size=G, pilot_ratio=0.75, eps_range=(0.5, 1.0), recon_sample_rate=0.5,
                       group_chunk=group_chunk, fixed_budget=False, decode_segments=1))
  cfg.oracle.model = recon_config.recon_config("tiny")
  cfg.oracle.model.scales = (32, 64)
  if teacher:
    cfg.oracle.perceptual.siglip2, cfg.oracle.perceptual.size = "random", "tiny"
  return cfg


def _setup(mesh_shape, teacher=False, group_chunk=0):
  """A tiny gaze TrainState, a random frozen oracle and the jitted step on a mesh."""
  mesh = mesh_lib.make_mesh(mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
  cfg = _cfg(teacher, group_chunk)
  tx = optim.make(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: GazeModel(cfg.gaze, nnx.Rngs(0)), tx, mesh)
  terms = [(0.3, oracle.extractor(vit_config.siglip2_config("tiny"), mesh=mesh))] if teacher else []
  with mesh_lib.use(mesh):
    frozen_oracle = oracle.Oracle(Reconstructor(cfg.oracle.model, nnx.Rngs(1)), oracle.Teachers(terms))
  step, _ = grpo_step.make_step(graphdef, shardings, mesh, cfg)
  clips = np.stack([synthetic.make_clip(T, 64, s) for s in range(B)])
  return mesh, state, oracle.replicated_state(frozen_oracle, mesh), step, clips


@pytest.fixture(scope="module")
def single():
  return _setup((1, 1))


def _run(setup, steps, state=None, recon_state=None):
  mesh, state0, recon0, step, clips = setup
  state = state0 if state is None else state
  with mesh_lib.use(mesh):
    video = {"video": jax.device_put(clips, mesh_lib.batch_sharding(mesh, 5))}
    rows = []
    for i in range(steps):
      state, m = step(state, video, jax.random.key(i), recon0 if recon_state is None else recon_state)
      rows.append(jax.device_get(m))
  return state, rows


def _params(state):
  return jax.device_get(state["model"])


def test_steps_run_and_change_parameters(single):
  before = _params(single[1])
  fresh = jax.tree.map(jnp.copy, single[1])
  state, rows = _run(single, 3, state=fresh)
  for m in rows:
    assert all(np.isfinite(v) for v in m.values()), m
    assert m["skipped"] == 0 and m["reward_mean"] < 0 and m["reward_group_std"] > 0
  assert rows[0]["temperature"] == pytest.approx(3.0) and rows[2]["temperature"] < rows[1]["temperature"]
  changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(_params(state)))]
  assert sum(changed) > len(changed) // 2


@pytest.mark.slow  # a second compile of the step, SPMD-partitioned over (4, 2)
def test_sharded_chunked_step_equals_single_device_one_pass(single):
  """Over a (4, 2) mesh with grpo.group_chunk=1 (rewards and policy gradients one rollout of
  each clip at a time, gradients summed), the step equals one device scoring whole groups."""
  a_state, a_rows = _run(single, 2, state=jax.tree.map(jnp.copy, single[1]))
  b_state, b_rows = _run(_setup((4, 2), group_chunk=1), 2)
  for ma, mb in zip(a_rows, b_rows):
    for k in ("reward_mean", "reward_vs_random", "loss", "grpo_loss", "task_loss_prediction_loss", "grad_norm",
              "gaze_ratio", "pilot_ratio"):
      np.testing.assert_allclose(ma[k], mb[k], rtol=2e-3, atol=1e-5, err_msg=k)
  for x, y in zip(jax.tree.leaves(_params(a_state)), jax.tree.leaves(_params(b_state))):
    np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


def test_group_chunk_must_divide_the_group():
  with pytest.raises(ValueError, match="grpo.group_chunk: 3 must be 0"):
    rollout_lib.make_spec(V, K, group_size=4, pilot_ratio=0.75, eps_range=(0.5, 1.0), recon_sample_rate=0.5,
                           group_chunk=3)


def test_nan_guard_skips_the_update_and_names_the_quantity(single):
  state = jax.tree.map(jnp.copy, single[1])
  before = _params(state)
  poisoned = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                          single[2])
  state, rows = _run(single, 1, state=state, recon_state=poisoned)
  assert rows[0]["skipped"] == 1
  for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(_params(state))):
    np.testing.assert_array_equal(x, y)
  assert rows[0]["nonfinite_reward"] == 1
  with pytest.raises(FloatingPointError, match=r"step 1: non-finite advantage=nan/inf, .*reward=nan/inf"):
    loop.check_finite(rows[0], 1, None)  # the training loop's check, on log steps
  loop.check_finite(_run(single, 1, state=state)[1][0], 2, None)  # a clean step passes


def test_perceptual_terms_enter_the_reward(single):
  """Same state, clips and key, so the same rollouts: the teacher's feature MSE only adds to
  each rollout's loss, so the reward falls and the recon loss rises by the same amount."""
  _, plain = _run(single, 1, state=jax.tree.map(jnp.copy, single[1]))
  _, with_teacher = _run(_setup((1, 1), teacher=True), 1)
  a, b = plain[0], with_teacher[0]
  assert b["skipped"] == 0 and b["reward_mean"] < a["reward_mean"] - 1e-4
  np.testing.assert_allclose(b["recon_loss"] - a["recon_loss"], a["reward_mean"] - b["reward_mean"], rtol=1e-4)
  np.testing.assert_allclose(a["gaze_ratio"], b["gaze_ratio"])


def test_frozen_reconstructor_from_a_stage0_export_without_an_optimizer(tmp_path):
  cfg = config_files.load(f"{ROOT}/configs/recon.py:tiny")
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    trained = Reconstructor(cfg.model, nnx.Rngs(5))
  with pytest.raises(ValueError, match="no config.json"):
    oracle.from_stage0(str(tmp_path), mesh)
  (tmp_path / "config.json").write_text(cfg.to_json())
  with pytest.raises(ValueError, match="no recon_final"):
    oracle.from_stage0(str(tmp_path), mesh)
  loop.export_model(str(tmp_path), oracle.FINAL_MODEL, trained, cfg.model)  # what stage 0 ends with
  model = oracle.load_reconstructor(None, mesh, workdir=str(tmp_path))
  want = jax.device_get(nnx.state(trained, nnx.Param))
  got = jax.device_get(nnx.state(model, nnx.Param))
  for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow  # train, evaluate (two evaluators), export, resume, restart from the export
def test_stage_trains_evaluates_and_exports(tmp_path):
  cfg = config_files.load(f"{ROOT}/configs/grpo.py:tiny")
  config_files.apply_overrides(cfg, ["--config.steps=2", "--config.batch_size=1", "--config.clip_len=2",
                            "--config.log_every=1", "--config.eval.every=2", "--config.eval.num_clips=1",
                            "--config.grpo.group_size=2", "--config.grpo.recon_sample_rate=0.5",
                            "--config.eval.ratios=(0.25,1.0)", "--config.eval.frames=(0,1)",
                            "--config.checkpoint_every=1", "--config.data.synthetic_count=16",
                            "--config.mesh.shape=(1,1)"])
  report = grpo_trainer.train(cfg, str(tmp_path / "run"), progress=False)
  rows = metric_log.read(str(tmp_path / "run" / "metrics.jsonl"))
  assert [r["step"] for r in rows if "reward_mean" in r] == [1, 2]
  assert (tmp_path / "run" / "pictures" / "gazes_step000002.png").exists()
  # As if stopped after the step-1 checkpoint, then rerun: the data iterator resumes too.
  resumed = tmp_path / "resumed"
  shutil.copytree(tmp_path / "run", resumed)
  shutil.rmtree(resumed / "ckpt" / "2"), shutil.rmtree(resumed / "gaze_final")
  (resumed / "metrics.jsonl").unlink()
  grpo_trainer.train(cfg, str(resumed), progress=False)
  again = metric_log.read(str(resumed / "metrics.jsonl"))
  reward = lambda rs: [r["reward_mean"] for r in rs if r["step"] == 2 and "reward_mean" in r]
  assert reward(again) == reward(rows)
  assert np.isfinite(report["reward_mean_last_10pct"]) and 0 < report["eval_final"]["eval_gaze_ratio_eps_stop"] <= 0.75
  assert 0.25 <= report["eval_final"]["eval_ratio_at_eps"] <= 1.0
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  gz = AutoGaze.from_pretrained(report["gaze_checkpoint"], mesh=mesh)
  assert gz.config.num_vision_tokens_each_frame == V
  cfg.init_gaze = report["gaze_checkpoint"]  # the next stage starts from the exported model
  _, graphdef, state, _ = grpo_trainer.initial_state(cfg, mesh)
  got = jax.device_get(nnx.state(nnx.merge(graphdef, state).model, nnx.Param))
  for x, y in zip(jax.tree.leaves(jax.device_get(nnx.state(gz.model, nnx.Param))), jax.tree.leaves(got)):
    np.testing.assert_array_equal(x, y)
  cfg.init_gaze = ""
  with pytest.raises(ValueError, match="vocabulary"):
    cfg.oracle.model.scales = (32, 64, 112)
    grpo_trainer.train(cfg, str(tmp_path / "bad"), progress=False)
