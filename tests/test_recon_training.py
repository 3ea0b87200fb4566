"""Stage-0 reconstructor training: random gazes, learning and its outputs, sharded steps, config overrides."""

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import synthetic
from autogaze_jax.models import vit_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import metric_log, optim, oracle, task
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.recon import step as recon_step
from autogaze_jax.train.recon import trainer as recon_trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def small_cfg(**kw):
  cfg = config_files.load(f"{ROOT}/configs/recon.py:tiny")
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
  ids, lens = task.random_gazes(jax.random.key(0), 3, 5, 265, 79, 0.02, 0.3)
  ids = np.asarray(ids)
  assert ids.shape == (3, 5, 79) and (np.asarray(lens) == 79).all()
  for clip in ids:
    for frame in clip:
      real = frame[frame != 265]
      assert 5 <= len(real) <= 79 and len(set(real.tolist())) == len(real)
      assert (frame[len(real) :] == 265).all()  # PAD only after the real gazes


def test_learns_on_cpu_and_writes_its_outputs(tmp_path):
  """30 steps lower the held-out L1; the run writes its pictures, report and final model.
  (Exact resume of this stage: tests/test_kill_resume.py, after a SIGKILL.)"""
  cfg = small_cfg(steps=30, checkpoint_every=30, **{"eval.every": 15})
  cfg.optimizer.lr = 3e-3
  report = recon_trainer.train(cfg, str(tmp_path), progress=False)
  before, after = report["eval_l1_untrained"], report["eval_l1_final"]
  for k in before:
    assert after[k] < 0.75 * before[k], report
  for name in ("curve.png", "reconstructions.png", "report.json", "config.json", "metrics.jsonl"):
    assert (tmp_path / name).exists(), name
  assert len(list((tmp_path / "pictures").glob("reconstructions_step*.png"))) == 3  # one per evaluation
  assert report["model"] == str(tmp_path / oracle.FINAL_MODEL)
  model = oracle.from_stage0(str(tmp_path), mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  assert tuple(model.cfg.scales) == (32, 64)


def test_sharded_step_equals_single_device():
  """One stage-0 step (the trainer's `make_step`) on a (4, 2) mesh and on one device: the
  same loss and the same updated parameters."""
  cfg = small_cfg(batch_size=8)
  batch = {"video": np.stack([synthetic.make_clip(cfg.clip_len, cfg.image_size, s) for s in range(8)])}
  results = []
  for shape in ((1, 1), (4, 2)):
    mesh = mesh_lib.make_mesh(shape, devices=jax.devices()[: shape[0] * shape[1]])
    tx = optim.make(cfg.optimizer, cfg.steps)
    graphdef, state, shardings = state_lib.create(lambda: Reconstructor(cfg.model, nnx.Rngs(0)), tx, mesh)
    step, batch_sh = recon_step.make_step(graphdef, shardings, mesh, cfg)
    frozen = oracle.replicated_state(oracle.load_teachers(cfg.perceptual, mesh), mesh)
    with mesh_lib.use(mesh):
      state, m = step(state, {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}, jax.random.key(3), frozen)
    results.append((float(m["loss"]), jax.device_get(state["model"])))
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_config_overrides_reject_typos_and_bad_types():
  cfg = small_cfg()
  config_files.apply_overrides(cfg, ["--config.optimizer.lr=0.01", "--config.mesh.shape=(2,4)"])
  assert cfg.optimizer.lr == 0.01 and tuple(cfg.mesh.shape) == (2, 4)
  with pytest.raises(ValueError, match="no field 'optimizer.lrr'"):
    config_files.apply_overrides(cfg, ["--config.optimizer.lrr=0.1"])
  with pytest.raises(ValueError, match="steps must be int"):
    config_files.apply_overrides(cfg, ["--config.steps=abc"])
  # bool is an int in Python; neither passes for the other.
  with pytest.raises(ValueError, match="steps must be int, got 'True'"):
    config_files.apply_overrides(cfg, ["--config.steps=True"])
  with pytest.raises(ValueError, match="lr must be float, got 'False'"):
    config_files.apply_overrides(cfg, ["--config.optimizer.lr=False"])
  flag = next(k for k, v in cfg.model.items() if isinstance(v, bool))
  with pytest.raises(ValueError, match=f"{flag} must be bool, got '1'"):
    config_files.apply_overrides(cfg, [f"--config.model.{flag}=1"])




def test_training_with_perceptual_terms(tmp_path):
  from helpers import hf_towers
  from safetensors.numpy import save_file

  cfg_sig = vit_config.siglip2_config("tiny")
  save_file(hf_towers.siglip(cfg_sig, np.random.default_rng(0)), str(tmp_path / "siglip.safetensors"))
  cfg = small_cfg(steps=2)
  cfg.perceptual.siglip2 = str(tmp_path / "siglip.safetensors")
  cfg.perceptual.size = "tiny"
  recon_trainer.train(cfg, str(tmp_path / "run"), progress=False)
  rows = [r for r in metric_log.read(str(tmp_path / "run" / "metrics.jsonl")) if "loss" in r]
  assert rows and all(r["loss"] > r["l1"] for r in rows)  # the perceptual term adds to L1


def test_remat_gives_the_same_loss_and_gradients():
  """Rematerialised blocks (the base/large default) recompute, they do not change results."""
  import re

  import jax.numpy as jnp

  from autogaze_jax.models import recon_config
  from autogaze_jax.train import task

  cfg = recon_config.recon_config("tiny")
  cfg.scales, cfg.pos_grid = (32, 64), 4
  video = jax.random.normal(jax.random.key(0), (2, 3, 3, 64, 64))
  ids, lens = task.random_gazes(jax.random.key(1), 2, 3, 20, 10, 0.2, 0.5)
  frames = jnp.array([0, 2])

  def loss_and_grads(remat: bool):
    cfg.remat = remat
    with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
      graph, params, rest = nnx.split(Reconstructor(cfg, nnx.Rngs(3)), nnx.Param, ...)
    loss = lambda p: task.evaluate(nnx.merge(graph, p, rest), video, ids, lens, frames)["loss"].mean()
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
      one = lambda v, i, n: task.evaluate(model, v[None], i[None], n[None], frames)["loss"]
      return jax.vmap(one)(video, ids, lens)

    return losses(state)

  np.testing.assert_allclose(frozen(False), frozen(True), rtol=1e-6)
