import jax
import jax.numpy as jnp
import numpy as np

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import gaze_config, layers

EXPECTED_INV_FREQ = [1.0, 0.44036663, 0.19392276, 0.085397102, 0.037606031, 0.016560441,
                     0.0072926651, 0.0032114461, 5.2484602e-04, 7.7846555e-05, 3.4281024e-05,
                     1.5096218e-05, 6.6478697e-06, 2.9274997e-06, 1.2891732e-06, 5.6770881e-07]


def test_llama3_inv_freq_values():
  cfg = gaze_config.released_config().decoder
  inv = layers.llama3_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.to_dict())
  assert inv.dtype == np.float32
  np.testing.assert_allclose(inv, EXPECTED_INV_FREQ, rtol=1e-6)


def test_rope_is_a_rotation_of_half_split_pairs():
  x = jax.random.normal(jax.random.key(0), (1, 3, 2, 8))
  pos = jnp.array([[0, 5, 100]])
  inv = layers.llama3_inv_freq(8, 10000.0, None)
  y = layers.apply_rope(x, pos, inv)
  np.testing.assert_allclose(y[0, 0], x[0, 0], atol=1e-7)  # position 0 is the identity
  np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  # dims i and i + 4 rotate together by angle pos * inv[i]
  a = 5 * inv[1]
  np.testing.assert_allclose(y[0, 1, 0, 1], x[0, 1, 0, 1] * np.cos(a) - x[0, 1, 0, 5] * np.sin(a), rtol=1e-5)


def test_rmsnorm_uses_eps_and_weight():
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    norm = layers.RMSNorm(4, 1e-5)
  norm.weight[...] = jnp.array([1.0, 2.0, 3.0, 4.0])
  x = jnp.array([[1.0, -2.0, 3.0, 0.5]])
  want = x / np.sqrt(np.mean(np.square(x)) + 1e-5) * np.array([1, 2, 3, 4])
  np.testing.assert_allclose(norm(x), want, rtol=1e-6)


def _keys_t(k_bhsd):
  """Cache keys in layers.kv_cache's transposed layout (B, H, d, S)."""
  return jnp.asarray(np.swapaxes(k_bhsd, 2, 3))


def _naive_attention(q, k, v, ok):
  s = np.einsum("bqhd,bhsd->bhqs", q, k) / np.sqrt(q.shape[-1])
  s = np.where(ok[:, None], s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  p = p / p.sum(-1, keepdims=True)
  return np.einsum("bhqs,bhsd->bqhd", p, v)


def test_attend_cache_plus_block_and_chunking_equal_naive():
  rng = np.random.default_rng(0)
  b, h, s, t, d = 2, 4, 11, 9, 8
  q = rng.normal(size=(b, t, h, d)).astype(np.float32)
  kc, vc = (rng.normal(size=(b, h, s, d)).astype(np.float32) for _ in range(2))
  kn, vn = (rng.normal(size=(b, h, t, d)).astype(np.float32) for _ in range(2))
  cache_ok = rng.random((b, s)) > 0.3
  new_ok = rng.random((b, t)) > 0.2
  new_ok[:, 0] = True
  causal = np.tril(np.ones((t, t), bool))
  ok = np.concatenate([np.broadcast_to(cache_ok[:, None], (b, t, s)), new_ok[:, None] & causal[None]], -1)
  want = _naive_attention(q, np.concatenate([kc, kn], 2), np.concatenate([vc, vn], 2), ok)
  for chunk in (512, 4):  # whole block, and query chunks with padding
    got = layers.attend(jnp.asarray(q), kn, vn, jnp.asarray(new_ok), _keys_t(kc), vc, jnp.asarray(cache_ok),
                        query_chunk=chunk)
    np.testing.assert_allclose(got, want, atol=1e-5)
  # Without a cache (teacher forcing), and grouped-query heads (2 KV heads for 4 queries).
  got = layers.attend(jnp.asarray(q), kn[:, :2], vn[:, :2], jnp.asarray(new_ok), _keys_t(kc[:, :2, :0]), vc[:, :2, :0],
                      jnp.zeros((b, 0), bool))
  rep = lambda x: np.repeat(x[:, :2], 2, axis=1)
  want = _naive_attention(q, rep(kn), rep(vn), new_ok[:, None] & causal[None])
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_attention_row_without_visible_key_is_finite():
  q = jnp.ones((1, 1, 1, 4))
  k = jnp.ones((1, 1, 1, 4))
  empty_k, empty_v = layers.kv_cache(1, 1, 0, 4)
  out = layers.attend(q, k, k, jnp.zeros((1, 1), bool), empty_k, empty_v, jnp.zeros((1, 0), bool))
  assert np.isfinite(np.asarray(out)).all()


def test_extent_bounded_cache_read_equals_naive_at_every_fill_level():
  """The blocked read (cache_extent) over caches filled to 0, 1, a block edge, a clamped
  last block and full, reading nothing past the extent; grouped-query heads; queries in
  chunks; under jit with a traced extent."""
  rng = np.random.default_rng(1)
  blk = layers.KV_BLOCK
  b, h, hk, t, d = 2, 4, 2, 10, 8
  s = 2 * blk + 37  # not a multiple of the block: the last block is clamped inside the cache
  q = rng.normal(size=(b, t, h, d)).astype(np.float32)
  kc, vc = (rng.normal(size=(b, hk, s, d)).astype(np.float32) for _ in range(2))
  kn, vn = (rng.normal(size=(b, hk, t, d)).astype(np.float32) for _ in range(2))
  new_ok = rng.random((b, t)) > 0.3
  new_ok[:, 0] = True
  causal = np.tril(np.ones((t, t), bool))
  rep = lambda x: np.repeat(x, h // hk, axis=1)
  run = jax.jit(lambda e, ok, chunk: layers.attend(jnp.asarray(q), kn, vn, jnp.asarray(new_ok), _keys_t(kc), vc, ok,
                                                   query_chunk=chunk, cache_extent=e), static_argnums=2)
  for extent in (0, 1, blk - 1, blk, blk + 1, 2 * blk + 5, s):
    # Slots past the extent are marked visible in the input: a read that went past it would
    # count them; the reference masks them out.
    cache_ok = (rng.random((b, s)) > 0.4) | (np.arange(s) >= extent)[None]
    seen = cache_ok & (np.arange(s) < extent)[None]
    ok = np.concatenate([np.broadcast_to(seen[:, None], (b, t, s)), new_ok[:, None] & causal[None]], -1)
    want = _naive_attention(q, rep(np.concatenate([kc, kn], 2)), rep(np.concatenate([vc, vn], 2)), ok)
    for chunk in (104, 4):
      got = run(jnp.int32(extent), jnp.asarray(cache_ok), chunk)
      np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"extent {extent}, chunk {chunk}")
