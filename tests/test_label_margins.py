"""benchmarks/label_margins.py's statistics on label entries whose margins are known."""

import importlib.util
import math
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "label_margins.py"
_spec = importlib.util.spec_from_file_location("label_margins", _PATH)
label_margins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(label_margins)


def entry(losses, runner_ups):
  return {"task_losses": losses, "runner_up_losses": runner_ups,
          "gazing_pos": [list(range(len(f))) for f in losses]}


def test_margins_by_frame_group_and_slot():
  # three frames, two gazes each; frames 1 and 2 pool into "frames 1+"
  a = entry([[1.0, 0.8], [2.0, 1.5], [1.0, 0.9]], [[1.005, 0.84], [2.06, 1.9], [1.2, 0.91]])
  b = entry([[2.0, 1.0], [1.0, 1.0], [1.0, 0.5]], [[2.3, 1.02], [1.01, 1.3], [1.03, 0.6]])
  got = label_margins.margins([a, b])
  assert set(got) == {("frame 0", 0), ("frame 0", 1), ("frames 1+", 0), ("frames 1+", 1)}
  f0 = got[("frame 0", 0)]  # rel gaps 0.005 and 0.15
  assert f0["steps"] == 2 and f0["median_rel_gap"] == pytest.approx((0.005 + 0.15) / 2)
  assert (f0["within_1pct"], f0["within_5pct"]) == (0.5, 0.5)
  assert f0["median_gap_over_gain"] is None  # a frame's first gaze has no loss before it
  f1 = got[("frame 0", 1)]  # gaps 0.04 of a 0.2 gain, 0.02 of a 1.0 gain
  assert f1["median_gap_over_gain"] == pytest.approx((0.2 + 0.02) / 2)
  assert f1["median_rel_gap"] == pytest.approx((0.05 + 0.02) / 2)  # over the pick's loss, not its gain
  later = got[("frames 1+", 0)]  # rel gaps 0.03, 0.2, 0.01, 0.03
  assert later["steps"] == 4 and later["median_rel_gap"] == pytest.approx(0.03)
  assert (later["within_1pct"], later["within_5pct"]) == (0.0, 0.75)
  # gains 0.5, 0.1, 0 (left out), 0.5; gaps 0.4, 0.01, -, 0.1 -> ratios 0.8, 0.1, 0.2
  assert got[("frames 1+", 1)]["median_gap_over_gain"] == pytest.approx(0.2)


def test_a_last_candidate_without_runner_up():
  got = label_margins.margins([entry([[1.0]], [[math.inf]])])
  assert got[("frame 0", 0)]["within_5pct"] == 0.0 and math.isinf(got[("frame 0", 0)]["median_rel_gap"])
