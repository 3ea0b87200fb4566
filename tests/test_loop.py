"""The shared training loop stops on a non-finite metric, or on any skipped step since its last check, before it can be checkpointed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogaze_jax import checkpointing
from autogaze_jax.train import loop


def test_non_finite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  def step_fn(state, batch, key, frozen):
    w = state["w"] + batch  # batch 5 is NaN: the state after step 5 is poisoned
    return {"w": w}, {"loss": jnp.sum(w), "grad_norm": jnp.float32(1.0)}

  host = lambda i: np.float32(np.nan if i == 4 else 1.0)
  stage = loop.Stage(step_fn=jax.jit(step_fn), host_batch=host, put_batch=jnp.asarray)
  # Detected at step 6, the first checkpoint step after the NaN, before anything is saved.
  with pytest.raises(FloatingPointError, match=r"step 6: non-finite loss=nan.*checkpoint \(step 4\) is intact"):
    loop.run(stage, {"w": jnp.zeros(3)}, workdir=str(tmp_path), steps=10, seed=0, log_every=100,
             eval_every=100, checkpoint_every=2, progress=False)
  ckpt = checkpointing.TrainCheckpoints(str(tmp_path), interval=2, async_save=False)
  assert ckpt.latest_step() == 4
  restored = ckpt.restore(4, checkpointing.abstract_like({"w": jnp.zeros(3)}))
  np.testing.assert_array_equal(restored["w"], np.full(3, 4.0))
  ckpt.close()


def test_a_skipped_step_between_checks_is_still_reported(tmp_path):
  """A step that skips its update (flag `nonfinite_x`) at step 3 is reported at the step-5
  log check, though step 4's own flag is clean: the loop merges flags between checks."""
  def step_fn(state, batch, key, frozen):
    return {"w": state["w"] + 1.0}, {"loss": jnp.sum(state["w"]), "nonfinite_labels": batch}

  host = lambda i: np.float32(1.0 if i == 2 else 0.0)
  stage = loop.Stage(step_fn=jax.jit(step_fn), host_batch=host, put_batch=jnp.asarray)
  with pytest.raises(FloatingPointError, match=r"step 5: non-finite labels=nan/inf"):
    loop.run(stage, {"w": jnp.zeros(3)}, workdir=str(tmp_path), steps=10, seed=0, log_every=5,
             eval_every=100, checkpoint_every=100, progress=False)
