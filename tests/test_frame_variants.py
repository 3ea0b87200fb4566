"""Reconstructing one frame under many gaze variants from a shared prefix equals the full
reconstructor on each variant, at every frame (first and last included), with PAD slots
anywhere and later frames' gazes left in place (they must not matter)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import frame_variants, recon_config
from autogaze_jax.models.reconstructor import Reconstructor

B, T, G, V = 2, 4, 5, 20


@pytest.fixture(scope="module")
def recon():
  cfg = recon_config.recon_config("tiny")
  cfg.scales, cfg.pos_grid = (32, 64), 4
  with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
    return Reconstructor(cfg, nnx.Rngs(0))


@pytest.mark.parametrize("t", range(T))
def test_variants_from_a_prefix_equal_the_full_model(recon, t):
  video = jax.random.normal(jax.random.key(1), (B, T, 3, 64, 64))
  ids = np.asarray(jax.random.randint(jax.random.key(2 + t), (B, T, G), 0, V + 1))  # V = PAD
  tokens = recon.embed_all(video)
  shared = frame_variants.prefix(recon, tokens, jnp.asarray(ids), t)
  variants = np.stack([ids[:, t], np.roll(ids[:, t], 1, -1), np.full_like(ids[:, t], V)])
  variants[2, :, 0] = 7  # one real gaze, the rest PAD
  pixels = frame_variants.reconstruct(recon, shared, tokens, jnp.asarray(variants), t)
  for c, frame_ids in enumerate(variants):
    full = ids.copy()
    full[:, t] = frame_ids
    want = recon(video, jnp.asarray(full), jnp.asarray([t]))[:, 0]
    np.testing.assert_allclose(np.asarray(pixels[c]), np.asarray(want), atol=2e-5)
  assert float(jnp.abs(pixels[0] - pixels[2]).max()) > 1e-3  # the variants differ: not vacuous
