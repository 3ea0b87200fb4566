"""Non-overlapping p x p patches flattened in (channel, row, col) order, the order of torch's
`unfold` and of a Conv2d kernel reshaped to (D, 3 p p), so `patches @ W.T + b` equals the
convolutional patch embedding (docs/design.md, "Gazed ViT"). Single- and multi-scale.
"""

from __future__ import annotations

import jax.numpy as jnp

from autogaze_jax import image as image_lib


def patchify(pixels_c_hw, p: int):
  """(..., C, H, W) -> (..., (H // p) * (W // p), C * p * p), patches row-major; the right and
  bottom remainders (H % p, W % p) are dropped, as a stride-p convolution does."""
  *lead, c, h, w = pixels_c_hw.shape
  gh, gw = h // p, w // p
  x = pixels_c_hw[..., : gh * p, : gw * p].reshape(*lead, c, gh, p, gw, p)
  n = len(lead)
  x = x.transpose(*range(n), n + 1, n + 3, n, n + 2, n + 4)
  return x.reshape(*lead, gh * gw, c * p * p)


def multiscale_patches(pixels_c_hw, scales, p: int, precision=None):
  """The frame bicubic-resized (PyTorch semantics) to each s x s, cut into patches and
  concatenated coarse -> fine: (..., sum_s (s // p)^2, C * p * p)."""
  return jnp.concatenate(
    [patchify(image_lib.resize_bicubic(pixels_c_hw, (s, s), precision), p) for s in scales], -2
  )
