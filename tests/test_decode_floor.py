"""The work model of benchmarks/decode_floor.py against XLA's count of the same blocks and the
model's own parameters."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import gaze_config, layers
from autogaze_jax.models.gaze import GazeModel

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "decode_floor.py"
_spec = importlib.util.spec_from_file_location("decode_floor", _PATH)
decode_floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decode_floor)


def _xla_block_flops(dec, fed: int, before: int) -> float:
  """XLA's FLOPs of feeding `fed` tokens after `before` visible cached keys (last layer
  last-only), then the heads: what one prefill or decode step computes."""
  graphdef, state = nnx.split(dec)
  kv, hd = dec.layers[0].self_attn.num_kv, dec.layers[0].self_attn.head_dim
  cache = layers.kv_cache(1, kv, before, hd)

  def block(state, x):
    d = nnx.merge(graphdef, state)
    h, _ = d.trunk(x, before + jnp.arange(fed)[None], jnp.ones((1, fed), bool), [cache] * len(d.layers),
                   before, jnp.ones((1, before), bool), last_only=True)
    return d.heads(h[:, -1])

  x = jnp.zeros((1, fed, dec.norm.weight.shape[0]))
  cost = jax.jit(block).lower(state, x).compile().cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def test_blocks_match_xla_and_weights_match_the_parameters():
  cfg = gaze_config.tiny_config()  # P = 16 vision tokens, K = 3
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    dec = GazeModel(cfg, nnx.Rngs(0)).gaze_decoder
    prefill = decode_floor.decoder_work(cfg, [1], batch=1)  # one frame, one step: the prefill
    two_steps = decode_floor.decoder_work(cfg, [4], batch=1)  # + one decode step after 16 keys
    # The model counts the matrix products; XLA adds the norms, RoPE and softmax (< 15 % here).
    for mine, xla in ((prefill["flops"], _xla_block_flops(dec, 16, 0)),
                      (two_steps["flops"] - prefill["flops"], _xla_block_flops(dec, 3, 16))):
      assert 0.85 * xla <= mine <= xla
  # Weights read per block: every parameter but the token embedding (K rows are read) and the
  # norms' scales; the decode step also reads the 16 keys of the prefill in both layers.
  params = nnx.state(dec, nnx.Param)
  skipped = dec.embed_tokens.embedding.size + sum(x.size for path, x in nnx.to_flat_state(params)
                                                  if "norm" in str(path[-2]) or "layernorm" in str(path[-2]))
  weights = 4 * (sum(x.size for x in jax.tree.leaves(params)) - skipped)
  assert prefill["bytes"] == weights
  assert two_steps["bytes"] == 2 * weights + 16 * 2 * 2 * 2 * 8 * 4  # keys x (k, v) x layers x kv heads x dim x 4 B


def test_floor_is_the_slower_of_reading_and_computing():
  out = decode_floor.floor_seconds({"flops": 4e9, "bytes": 1e9}, bandwidth=1e9, rate=2e9)
  assert out == {"read_s": 1.0, "compute_s": 2.0, "floor_s": 2.0}
  assert decode_floor.decoder_work(gaze_config.tiny_config(), [1, 1], batch=3)["flops"] == pytest.approx(
    3 * decode_floor.decoder_work(gaze_config.tiny_config(), [1, 1], batch=1)["flops"])
