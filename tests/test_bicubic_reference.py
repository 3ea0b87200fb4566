"""Our PyTorch-compatible bicubic resize against `torch.nn.functional.interpolate(mode="bicubic",
align_corners=False)` itself (reference `bicubic_expected.npz`): antialias off (the gaze model's
squash, multi-scale patchify and position tables) and on (the DINOv2 position table), over up-,
down- and non-square resizes. The cases come from the file."""

import numpy as np
import pytest

from autogaze_jax import image as image_lib

ATOL = 2e-4  # the reference README's tolerance (torch's own float32 coordinates move outputs by ~5e-5)


def _cases(parity_dir):
  ref = np.load(parity_dir / "bicubic_expected.npz")
  return ref, [tuple(int(v) for v in row) for row in ref["sizes"]]


def _resize(mat_fn, x, oh, ow):
  h, w = x.shape[-2:]
  rows = np.matmul(mat_fn(h, oh).astype(np.float64), x.astype(np.float64))  # (n, c, oh, w)
  return np.matmul(rows, mat_fn(w, ow).astype(np.float64).T)


@pytest.mark.parametrize("antialias", [False, True])
def test_matches_torch_interpolate(parity_dir, antialias):
  ref, sizes = _cases(parity_dir)
  worst = 0.0
  for h, w, oh, ow in sizes:
    name = f"{h}x{w}_to_{oh}x{ow}"
    x = ref[f"in_{name}"]
    want = ref[f"out_{name}_aa{int(antialias)}"]
    if antialias:
      got = _resize(image_lib.bicubic_matrix_antialias, x, oh, ow)
    else:
      got = np.asarray(image_lib.resize_bicubic(x, (oh, ow)))  # the function the models call
    assert got.shape == want.shape, name
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=name)
    worst = max(worst, float(np.abs(got - want).max()))
  print(f"\nbicubic antialias={antialias}: largest error {worst:.2e} over {len(sizes)} cases")

