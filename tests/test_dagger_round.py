"""benchmarks/dagger_round.py's expert labels at the model's states: the labeller's own path gives
its labels back, and on another path each pick is the best id left given that path."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import labels, synthetic
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import labelling

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "dagger_round.py"
_spec = importlib.util.spec_from_file_location("dagger_round", _PATH)
dagger_round = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dagger_round)

T, BUDGETS, V = 2, (3, 2), 20


@pytest.fixture(scope="module")
def setup():
  cfg = recon_config.recon_config("tiny")
  cfg.scales = (32, 64)
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    recon = Reconstructor(cfg, nnx.Rngs(0))
  clips = np.stack([synthetic.make_clip(T, 64, seed=s, style="cells") for s in (5, 6, 7)])
  search = labelling.GreedySearch(recon, BUDGETS, eps=-1.0, chunk=8)
  return mesh, recon, clips, search


def test_on_the_labellers_own_path_the_expert_gives_its_labels_back(setup):
  mesh, _, clips, search = setup
  with mesh_lib.use(mesh):
    entries = search(clips)
    got = labels.collate(entries, V, max(BUDGETS))
    picks, losses = dagger_round.expert_picks(search, clips, got["ids"], got["lens"], batch=2)
  np.testing.assert_array_equal(picks, got["ids"])
  real = got["ids"] != V
  np.testing.assert_allclose(losses[real], got["task_losses"][real], rtol=1e-6)


def test_on_another_path_each_pick_is_the_best_id_left(setup):
  mesh, recon, clips, search = setup
  rng = np.random.default_rng(0)
  states = np.full((3, T, max(BUDGETS)), V, np.int32)
  lens = np.broadcast_to(np.asarray(BUDGETS), (3, T)).copy()
  lens[2] = 1  # a clip with a smaller budget in the same batch: nothing past it is labelled
  for i in range(3):
    for t in range(T):
      states[i, t, : lens[i, t]] = rng.choice(V, lens[i, t], replace=False)
  with mesh_lib.use(mesh):
    picks, losses = dagger_round.expert_picks(search, clips, states, lens)
    video = image_lib.normalize_on_device(jnp.asarray(clips))
    every = jnp.broadcast_to(jnp.arange(V, dtype=jnp.int32), (3, V))
    for t in range(T):
      for s in range(BUDGETS[t]):
        prefix = np.where(np.arange(max(BUDGETS)) < s, states[:, t], V)
        ids = states.copy()
        ids[:, t] = prefix  # the path up to slot s of frame t; later frames do not reach frame t's loss
        ids[:, t + 1:] = V
        all_losses = np.array(labelling.candidate_losses(recon, video, jnp.asarray(ids), t, s, every, 8))
        for i in range(3):  # already gazed in this frame
          all_losses[i, states[i, t, :min(s, lens[i, t])]] = np.inf
        live = s < lens[:, t]
        np.testing.assert_array_equal(picks[live, t, s], all_losses[live].argmin(1))
        own = all_losses[np.flatnonzero(live), states[live, t, s]]
        np.testing.assert_allclose(losses[live, t, s], own, rtol=1e-5)
        assert (picks[~live, t, s] == V).all()
  assert not np.array_equal(picks, states)  # a random path is not the expert's


def test_fine_tune_trains_the_model_it_is_given_on_both_arms():
  from autogaze_jax.models import gaze_config
  from autogaze_jax.models.gaze import GazeModel

  cfg = gaze_config.tiny_config()  # K = 3: three slots per frame
  rng = np.random.default_rng(1)
  clips = rng.integers(0, 256, (4, T, 64, 64, 3), dtype=np.uint8)
  ids = np.stack([[rng.choice(V, 3, replace=False) for _ in range(T)] for _ in range(4)]).astype(np.int32)
  other = (ids + 5) % V
  lens = np.full((4, T), 3, np.int32)
  arms = {"labels": {"clips": clips, "targets": ids, "fed": ids, "lens": lens, "task_losses": np.ones((4, T, 3))},
          "dagger": {"targets": other, "fed": ids, "task_losses": np.ones((4, T, 3))}}
  with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
    trained = {}
    for mix in (0.0, 1.0):
      model = GazeModel(cfg, nnx.Rngs(0))
      before = jax.tree.map(np.array, nnx.state(model, nnx.Param))
      loss = dagger_round.fine_tune(model, arms, 3, 1e-2, mix, 0, cfg.scales, 0.3, batch=2)
      after = nnx.state(model, nnx.Param)
      assert len(loss) == 3 and np.isfinite(loss).all()
      trained[mix] = jax.tree.leaves(after)
      assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), trained[mix]))
  # the two arms train on different targets, so they end apart
  assert any(not np.allclose(a, b) for a, b in zip(trained[0.0], trained[1.0]))
