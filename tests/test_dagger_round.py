"""benchmarks/dagger_round.py's fine-tune (its labels are the NTP stage's DAgger labels,
tests/test_dagger.py)."""

import importlib.util
import pathlib

import jax
import numpy as np
from flax import nnx

from autogaze_jax import mesh as mesh_lib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "dagger_round.py"
_spec = importlib.util.spec_from_file_location("dagger_round", _PATH)
dagger_round = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dagger_round)

T, V = 2, 20


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
