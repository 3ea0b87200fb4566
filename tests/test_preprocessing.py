import jax.numpy as jnp
import numpy as np

from autogaze_jax import image as image_lib


def test_official_processor_bit_exact(parity_dir):
  clip = np.load(parity_dir / "clip16.npz")
  resized = image_lib.resize_frames(clip["raw_frames"], 224)
  np.testing.assert_array_equal(resized, clip["resized_frames"])
  video = image_lib.preprocess(clip["raw_frames"], 224)
  np.testing.assert_array_equal(video, clip["video"][0])


def test_pixel_values_and_shortest_edge():
  x = image_lib.normalize(np.array([[[[0, 0, 0], [255, 255, 255]]]], np.uint8))
  np.testing.assert_allclose(x[0, 0, 0], [-6.484716, 2.248908], atol=1e-6)
  assert image_lib.shortest_edge_size(360, 640, 224) == (224, 398)
  assert image_lib.shortest_edge_size(1920, 1080, 224) == (398, 224)
  frames = np.zeros((2, 360, 640, 3), np.uint8)
  assert image_lib.preprocess(frames).shape == (2, 3, 224, 398)


def _torch_bicubic_reference(x, out_h, out_w):
  """Direct per-pixel evaluation of PyTorch's bicubic (A=-0.75, align_corners=False)."""
  a = -0.75

  def w(d):
    d = abs(d)
    if d <= 1:
      return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
      return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return 0.0

  h, wd = x.shape
  out = np.zeros((out_h, out_w))
  for i in range(out_h):
    sy = (i + 0.5) * h / out_h - 0.5
    y0 = int(np.floor(sy))
    for j in range(out_w):
      sx = (j + 0.5) * wd / out_w - 0.5
      x0 = int(np.floor(sx))
      acc = 0.0
      for dy in range(-1, 3):
        for dx in range(-1, 3):
          yy, xx = min(max(y0 + dy, 0), h - 1), min(max(x0 + dx, 0), wd - 1)
          acc += w(sy - (y0 + dy)) * w(sx - (x0 + dx)) * x[yy, xx]
      out[i, j] = acc
  return out


def test_bicubic_matches_pytorch_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(13, 17)).astype(np.float32)
  for oh, ow in [(9, 23), (26, 8), (13, 17)]:
    got = np.asarray(image_lib.resize_bicubic(jnp.asarray(x)[None, None], (oh, ow)))[0, 0]
    np.testing.assert_allclose(got, _torch_bicubic_reference(x, oh, ow), atol=1e-5)


def test_bicubic_matrix_properties():
  m = image_lib.bicubic_matrix(256, 224)
  np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
  assert (m < 0).any()  # negative lobes: overshoot is allowed, no clipping
  np.testing.assert_array_equal(image_lib.bicubic_matrix(224, 224), np.eye(224, dtype=np.float32))
