"""TrainCheckpoints' background saves: what is saved is the state at the save call, even when
the next step donates its buffers; a failed background save is raised, not lost."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autogaze_jax import checkpointing


@jax.jit
def _bump(state):
  return jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.floating) else x, state)


_bump_donated = jax.jit(_bump.__wrapped__, donate_argnums=0)


def test_background_save_keeps_the_state_of_the_call_across_donation(tmp_path):
  ckpt = checkpointing.TrainCheckpoints(str(tmp_path), interval=2)
  real_save = ckpt.mngr.save

  def late_save(*args, **kwargs):  # Orbax reads the arrays only after the donations below
    time.sleep(0.5)
    return real_save(*args, **kwargs)

  ckpt.mngr.save = late_save
  state = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(3)}
  assert not ckpt.save(1, state)  # not an interval step
  assert ckpt.save(2, state)
  assert ckpt._pending is not None and not ckpt._pending.done()  # saving in the background
  old = state
  for _ in range(3):  # the saved buffers would be gone (donated) if the save read them later
    state = _bump_donated(state)
  assert old["w"].is_deleted()
  ckpt.close()
  ckpt = checkpointing.TrainCheckpoints(str(tmp_path), interval=2)
  assert ckpt.latest_step() == 2 and ckpt.last_requested == 2
  target = {"w": jnp.zeros((2, 3)), "key": jax.random.key(0)}
  restored = ckpt.restore(2, checkpointing.abstract_like(target))
  np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3))
  np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(jax.random.key(3)))
  ckpt.close()


def test_failed_background_save_is_raised_at_the_next_call(tmp_path):
  ckpt = checkpointing.TrainCheckpoints(str(tmp_path), interval=1)

  def broken(*args, **kwargs):
    raise OSError("disk full")

  ckpt.mngr.save = broken
  assert ckpt.save(1, {"w": jnp.ones(3)})  # handed to the background thread
  with pytest.raises(OSError, match="disk full"):
    ckpt.latest_step()
  ckpt.mngr.save = broken
  assert ckpt.save(2, {"w": jnp.ones(3)})
  with pytest.raises(OSError, match="disk full"):  # also when the run ends right after
    ckpt.close()
