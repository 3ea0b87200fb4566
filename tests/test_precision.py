"""bfloat16 gaze models: what is cast, that they gaze (valid ids, finite heads, a bf16 cache),
and their agreement with float32 reported, not asserted exact."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_tiny
from flax import nnx

from autogaze_jax import vocab
from autogaze_jax.models import decoding, precision


def test_cast_keeps_heads_float32_and_the_original_untouched():
  tiny = make_tiny()
  half = tiny.with_precision("bfloat16")
  for path, v in nnx.to_flat_state(nnx.state(half.model, nnx.Param)):
    want = jnp.float32 if any(str(p) in precision.FLOAT32_PARAMS for p in path) else jnp.bfloat16
    assert v[...].dtype == want, path
  assert all(v[...].dtype == jnp.float32 for _, v in nnx.to_flat_state(nnx.state(tiny.model, nnx.Param)))
  with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
    tiny.with_precision("fp8")


def test_bfloat16_gazes_run_in_bfloat16_and_mostly_agree(tiny_video):
  tiny = make_tiny()
  half = tiny.with_precision("bfloat16")
  budgets = vocab.budgets_from_ratio(0.6, 6, 20)
  ids32, lens32 = tiny.generate(tiny_video, budgets, None)
  ids16, lens16 = half.generate(tiny_video, budgets, None)
  assert ids16.shape == ids32.shape and (lens16 == lens32).all()
  assert ((ids16 >= 0) & (ids16 <= 20)).all()
  model = half.model
  tokens, _ = model.encode(jnp.asarray(tiny_video))
  state = decoding.init_state(model, 3, decoding.DecodeSpec(slots=12), 64, tokens.dtype)
  assert tokens.dtype == jnp.bfloat16 and state.kv[0][0].dtype == jnp.bfloat16
  stream = half.stream(3, gazing_ratio=0.6)
  assert stream.state.kv[0][0].dtype == jnp.bfloat16 and stream.state.conv[0].dtype == jnp.bfloat16
  first = stream.step(tiny_video[:, 0])
  assert ((first["gazing_pos"] >= 0) & (first["gazing_pos"] < 20)).all()
  out = half.gaze(tiny_video, gazing_ratio=0.6)
  assert np.isfinite(out["task_loss_prediction"]).all()
  same = np.mean([set(a[:n]) == set(b[:n]) for a, b, n in
                  zip(ids16.reshape(-1, ids16.shape[-1]), ids32.reshape(-1, ids32.shape[-1]), lens32.ravel())])
  print(f"bf16 frames with the same gaze set as float32: {same:.2f}")
  assert same > 0.3  # mostly the same gazes: a broken cast would give unrelated ones
