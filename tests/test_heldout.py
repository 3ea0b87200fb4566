"""The main job's curves: the greedy oracle searched past its ratio cap only for the clips that
have not reached ε gives the same per-clip ratios as searching every clip at every budget; the
policies' grid in shared programs equals one decode per budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.data import synthetic
from autogaze_jax.models import decoding, gaze_config, recon_config
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import clip_stats, evals, heldout, task

RATIOS = (0.05, 0.1, 0.25, 0.5)


@pytest.fixture(scope="module")
def curves():
  cfg = recon_config.recon_config("tiny")
  cfg.scales, cfg.pos_grid = (32, 64), 4
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    recon = Reconstructor(cfg, nnx.Rngs(0))
  clips = np.stack([synthetic.make_clip(2, 64, seed=s, style="sparse") for s in range(4)])
  return heldout.Curves(recon, mesh, clips, RATIOS, frames=(0, 1))


def test_the_oracle_past_its_cap_searches_only_unreached_clips(curves):
  assert curves.budgets == (1, 2, 5, 10)
  full, _ = curves.oracle(chunk=20)
  assert np.isfinite(full).all()
  eps = float(np.median(full[:, 1]))  # about half the clips reach it by budget 2 (ratio 0.1)
  capped, kept = curves.oracle(chunk=20, eps=eps, max_ratio=0.1, keep=2)
  reached = (full[:, :2] <= eps).any(1)
  assert 0 < reached.sum() < len(reached)
  np.testing.assert_allclose(capped[:, :2], full[:, :2], rtol=1e-6)  # up to the cap: every clip
  assert np.isnan(capped[reached, 2:]).all()  # past it: not measured for the clips already there
  np.testing.assert_allclose(capped[~reached, 2:], full[~reached, 2:], rtol=1e-6)
  np.testing.assert_allclose(clip_stats.ratio_at_eps(capped, curves.ratios, eps),
                             clip_stats.ratio_at_eps(full, curves.ratios, eps))
  assert kept.shape == (2, 2) and (kept < curves.vocab).all()


def test_random_and_policy_curves_have_one_row_per_clip(curves):
  rnd = curves.random(seed=0)
  assert rnd.shape == (4, 4) and np.isfinite(rnd).all()
  assert not np.array_equal(rnd, curves.random(seed=1))  # the seed draws other gazes
  with mesh_lib.use(curves.mesh):
    model = GazeModel(gaze_config.tiny_config(), nnx.Rngs(0))
  policy = curves.policy(model)
  assert policy.shape == (4, 4) and np.isfinite(policy).all()
  assert not np.allclose(policy, rnd)


def test_one_program_for_the_grid_equals_one_decode_per_budget(curves):
  """policy_losses decodes each budget with its group's largest slots (here one group, the budget traced);
  each budget's gazes and loss equal a decode sized for that budget alone (K = 3, so the slot
  counts differ: 3, 3, 6, 12), and random_losses equals drawing each budget's gazes apart."""
  with mesh_lib.use(curves.mesh):
    model = GazeModel(gaze_config.tiny_config(), nnx.Rngs(3))
    video = image_lib.normalize_on_device(jnp.asarray(curves.clips))
    frames = jnp.asarray(curves.frames, jnp.int32)
    b, t = video.shape[:2]
    grid, kept = evals.policy_losses(model, curves.recon, video, frames, curves.budgets, keep=5)
    rnd = evals.random_losses(curves.recon, video, frames, curves.budgets, curves.vocab, jax.random.key(1))
    for j, n in enumerate(curves.budgets):
      spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(n, 3))
      ids, lens = decoding.generate(model, video, jnp.full((t,), n, jnp.int32), jnp.zeros((b, t)), None, 1.0, spec)
      alone = task.evaluate(curves.recon, video, ids, lens, frames)["loss_each_frame"].mean(-1)
      np.testing.assert_allclose(grid[:, j], alone, rtol=1e-5, atol=1e-6)
      if n == 5:
        np.testing.assert_array_equal(kept[:, : ids.shape[2]], ids[0])
        assert (kept[:, ids.shape[2]:] == curves.vocab).all()  # PAD past the budget's slots
      r = (n + 0.5) / curves.vocab
      ids, lens = task.random_gazes(jax.random.fold_in(jax.random.key(1), n), b, t, curves.vocab, n, r, r)
      alone = task.evaluate(curves.recon, video, ids, lens, frames)["loss_each_frame"].mean(-1)
      np.testing.assert_allclose(rnd[:, j], alone, rtol=1e-5, atol=1e-6)
  assert not np.allclose(grid[:, 0], grid[:, -1])  # the budget reaches the decoding


def test_budget_groups_bound_the_padding_and_keep_the_order():
  tiny = evals.budget_grid((0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0), 20)
  assert evals.budget_groups(tiny) == [(1, 2, 3, 4), (5, 6, 8, 10, 15, 20)]
  released = evals.budget_grid((0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0), 265)
  groups = evals.budget_groups(released, k=10)
  assert sum(groups, ()) == released and len(groups) > 1
  for g in groups:  # no budget is padded past 4x its own slots
    assert vocab_lib.slots_per_frame(g[-1], 10) <= evals.SLOT_SPREAD * vocab_lib.slots_per_frame(g[0], 10)
  with pytest.raises(ValueError, match="keep=7"):
    evals.policy_losses(None, None, np.zeros((1, 2)), None, (1, 2, 5), keep=7)
