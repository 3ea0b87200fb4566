import numpy as np
import pytest

from autogaze_jax import vocab


def test_tokens_per_scale_vectors():
  assert vocab.tokens_per_scale([32, 64, 112, 224], 265) == [4, 16, 49, 196]
  assert vocab.scale_offsets([32, 64, 112, 224], 265) == [0, 4, 20, 69]
  assert vocab.tokens_per_scale([224], 196) == [196]
  assert vocab.tokens_per_scale([56, 112, 196, 392], 265) == [4, 16, 49, 196]
  assert vocab.grid_sides([32, 64, 112, 224], 265) == [2, 4, 7, 14]


@pytest.mark.parametrize("ratio,budget", [(0.75, 198), (0.1, 26), (0.03, 7), (1.0, 265), (0.2, 53), (0.001, 1)])
def test_budgets(ratio, budget):
  assert vocab.budgets_from_ratio(ratio, 3, 265).tolist() == [budget] * 3


def test_per_frame_budgets_and_slots():
  b = vocab.budgets_from_ratio([0.1, 0.75], 2, 265)
  assert b.tolist() == [26, 198]
  assert vocab.slots_per_frame(198, 10) == 200
  assert vocab.slots_per_frame(26, 10) == 30


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01, float("nan"), [0.5, 0.5]])
def test_bad_ratio_names_argument(bad):
  with pytest.raises(ValueError, match="gazing_ratio"):
    vocab.budgets_from_ratio(bad, 3, 265)


def test_task_loss_requirement_shapes():
  assert vocab.check_task_loss_requirement(None, 2, 3) is None
  np.testing.assert_array_equal(vocab.check_task_loss_requirement(0.7, 2, 3), np.full((2, 3), 0.7, np.float32))
  per_frame = vocab.check_task_loss_requirement([0.1, 0.2, 0.3], 2, 3)
  assert per_frame.shape == (2, 3) and per_frame[1, 2] == np.float32(0.3)
  with pytest.raises(ValueError, match="task_loss_requirement"):
    vocab.check_task_loss_requirement(np.zeros((3, 3)), 2, 3)
  with pytest.raises(ValueError, match="task_loss_requirement"):
    vocab.check_task_loss_requirement(float("inf"), 2, 3)


def test_gazing_masks_ignore_pad():
  ids = np.array([[[0, 5, 265, 69 + 195]]])
  m = vocab.gazing_masks(ids, [32, 64, 112, 224], 265)
  assert [x.shape for x in m] == [(1, 1, 4), (1, 1, 16), (1, 1, 49), (1, 1, 196)]
  assert m[0][0, 0].tolist() == [1, 0, 0, 0]
  assert m[1][0, 0, 1] == 1 and m[3][0, 0, 195] == 1
  assert sum(x.sum() for x in m) == 3
