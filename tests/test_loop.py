"""The shared training loop stops on a non-finite metric before it can be checkpointed."""

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
