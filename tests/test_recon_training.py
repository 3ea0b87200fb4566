"""Stage-0 reconstructor training: random gazes, learning, exact resume, sharded steps, config overrides."""

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import checkpointing, cli, metrics
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import recon_stage0
from autogaze_jax.train import state as state_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def small_cfg(**kw):
  cfg = cli.load_config_file(f"{ROOT}/configs/recon.py:tiny")
  cfg.model.scales = (32, 64)
  cfg.image_size, cfg.clip_len, cfg.batch_size = 64, 4, 2
  cfg.steps, cfg.log_every, cfg.checkpoint_every = 4, 1, 2
  cfg.eval.every, cfg.eval.frames, cfg.eval.num_clips = 2, (0, 3), 2
  cfg.optimizer.warmup_steps = 2
  cfg.mesh.shape = (1, 1)
  for k, v in kw.items():
    cur, *path = k.split(".")
    node = cfg
    for p in path:
      node, cur = node[cur], p
    node[cur] = v
  return cfg


def test_random_gazes_are_distinct_and_padded():
  ids, lens = recon_stage0.random_gazes(jax.random.key(0), 3, 5, 265, 79, 0.02, 0.3)
  ids = np.asarray(ids)
  assert ids.shape == (3, 5, 79) and (np.asarray(lens) == 79).all()
  for clip in ids:
    for frame in clip:
      real = frame[frame != 265]
      assert 5 <= len(real) <= 79 and len(set(real.tolist())) == len(real)
      assert (frame[len(real) :] == 265).all()  # PAD only after the real gazes


def _final_params(workdir, cfg):
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  tx = state_lib.make_optimizer(cfg.optimizer, cfg.steps)
  _, state, _ = state_lib.create(lambda: Reconstructor(cfg.model, nnx.Rngs(0)), tx, mesh)
  ck = checkpointing.TrainCheckpoints(str(workdir), 1)
  restored = ck.restore(ck.latest_step(), checkpointing.abstract_like(state))
  ck.close()
  return restored


def test_resume_continues_exactly(tmp_path):
  cfg = small_cfg()
  recon_stage0.train(cfg, str(tmp_path / "a"), progress=False)
  recon_stage0.train(small_cfg(steps=2), str(tmp_path / "b"), progress=False)
  recon_stage0.train(cfg, str(tmp_path / "b"), progress=False)  # resumes at step 2
  a, b = _final_params(tmp_path / "a", cfg), _final_params(tmp_path / "b", cfg)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  rows_a = metrics.read(str(tmp_path / "a" / "metrics.jsonl"))
  rows_b = metrics.read(str(tmp_path / "b" / "metrics.jsonl"))
  last = lambda rows: [r["loss"] for r in rows if r["step"] == 4 and "loss" in r]
  assert last(rows_a) == last(rows_b)
  for name in ("curve.png", "reconstructions.png", "report.json", "config.json"):
    assert (tmp_path / "a" / name).exists()
  assert list((tmp_path / "a" / "pictures").glob("reconstructions_step*.png"))  # one per evaluation


def test_learns_on_cpu(tmp_path):
  cfg = small_cfg(steps=30, checkpoint_every=30, **{"eval.every": 30})
  cfg.optimizer.lr = 3e-3
  report = recon_stage0.train(cfg, str(tmp_path), progress=False)
  before, after = report["eval_l1_untrained"], report["eval_l1_final"]
  for k in before:
    assert after[k] < 0.75 * before[k], report


def test_sharded_step_on_eight_devices(tmp_path):
  cfg = small_cfg(steps=2, batch_size=8)
  cfg.mesh.shape = (4, 2)
  report = recon_stage0.train(cfg, str(tmp_path), progress=False)
  assert np.isfinite(list(report["eval_l1_final"].values())).all()


def test_config_overrides_reject_typos_and_bad_types():
  cfg = small_cfg()
  cli.apply_overrides(cfg, ["--config.optimizer.lr=0.01", "--config.mesh.shape=(2,4)"])
  assert cfg.optimizer.lr == 0.01 and tuple(cfg.mesh.shape) == (2, 4)
  with pytest.raises(ValueError, match="no field 'optimizer.lrr'"):
    cli.apply_overrides(cfg, ["--config.optimizer.lrr=0.1"])
  with pytest.raises(ValueError, match="steps must be int"):
    cli.apply_overrides(cfg, ["--config.steps=abc"])
  # bool is an int in Python; neither passes for the other.
  with pytest.raises(ValueError, match="steps must be int, got 'True'"):
    cli.apply_overrides(cfg, ["--config.steps=True"])
  with pytest.raises(ValueError, match="lr must be float, got 'False'"):
    cli.apply_overrides(cfg, ["--config.optimizer.lr=False"])
  flag = next(k for k, v in cfg.model.items() if isinstance(v, bool))
  with pytest.raises(ValueError, match=f"{flag} must be bool, got '1'"):
    cli.apply_overrides(cfg, [f"--config.model.{flag}=1"])




def test_training_with_perceptual_terms(tmp_path):
  from safetensors.numpy import save_file

  from autogaze_jax.models import feature_vit
  from test_perceptual import _hf_siglip

  cfg_sig = feature_vit.siglip2_config("tiny")
  save_file(_hf_siglip(cfg_sig, np.random.default_rng(0)), str(tmp_path / "siglip.safetensors"))
  cfg = small_cfg(steps=2)
  cfg.perceptual.siglip2 = str(tmp_path / "siglip.safetensors")
  cfg.perceptual.size = "tiny"
  recon_stage0.train(cfg, str(tmp_path / "run"), progress=False)
  rows = [r for r in metrics.read(str(tmp_path / "run" / "metrics.jsonl")) if "loss" in r]
  assert rows and all(r["loss"] > r["l1"] for r in rows)  # the perceptual term adds to L1


def test_remat_gives_the_same_loss_and_gradients():
  """Rematerialised blocks (the base/large default) recompute, they do not change results."""
  import re

  import jax.numpy as jnp

  from autogaze_jax import recon_config, reconstruction_task

  cfg = recon_config.recon_config("tiny")
  cfg.scales, cfg.pos_grid = (32, 64), 4
  video = jax.random.normal(jax.random.key(0), (2, 3, 3, 64, 64))
  ids, lens = recon_stage0.random_gazes(jax.random.key(1), 2, 3, 20, 10, 0.2, 0.5)
  frames = jnp.array([0, 2])

  def loss_and_grads(remat: bool):
    cfg.remat = remat
    with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
      graph, params, rest = nnx.split(Reconstructor(cfg, nnx.Rngs(3)), nnx.Param, ...)
    loss = lambda p: reconstruction_task.evaluate(nnx.merge(graph, p, rest), video, ids, lens, frames)["loss"].mean()
    grad_fn = jax.value_and_grad(loss)
    rematted = re.search(r"\b(remat2?|checkpoint)\[", str(jax.make_jaxpr(grad_fn)(params))) is not None
    return (*jax.jit(grad_fn)(params), rematted)

  (a, ga, plain), (b, gb, rematted) = loss_and_grads(False), loss_and_grads(True)
  assert rematted and not plain  # the blocks really are rematerialised, and only when asked
  np.testing.assert_allclose(a, b, rtol=1e-6)
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)

  def frozen(remat: bool):  # as GRPO scores rollouts: merged in the step, called in a per-clip vmap
    cfg.remat = remat
    with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
      graph, state = nnx.split(Reconstructor(cfg, nnx.Rngs(3)))

    @jax.jit
    def losses(st):
      model = nnx.merge(graph, st)
      one = lambda v, i, n: reconstruction_task.evaluate(model, v[None], i[None], n[None], frames)["loss"]
      return jax.vmap(one)(video, ids, lens)

    return losses(state)

  np.testing.assert_allclose(frozen(False), frozen(True), rtol=1e-6)
