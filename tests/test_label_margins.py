"""benchmarks/label_margins.py's statistics on label entries whose margins are known."""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "label_margins.py"
_spec = importlib.util.spec_from_file_location("label_margins", _PATH)
label_margins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(label_margins)


def test_margins_by_frame_group_and_slot():
  # two frames, two gazes each; runner-ups 0.5 % / 10 % above the pick on frame 0, 3 % / 40 % after
  entry = {"task_losses": [[1.0, 0.5], [2.0, 1.0]],
           "runner_up_losses": [[1.005, 0.55], [2.06, 1.4]],
           "gazing_pos": [[0, 1], [20, 21]]}
  got = label_margins.margins([entry, entry])
  assert set(got) == {("frame 0", 0), ("frame 0", 1), ("frames 1+", 0), ("frames 1+", 1)}
  f0 = got[("frame 0", 0)]
  assert f0["steps"] == 2 and f0["median_rel_gap"] == pytest.approx(0.005)
  assert (f0["within_1pct"], f0["within_5pct"]) == (1.0, 1.0)
  assert f0["median_gap_over_gain"] is None  # the first gaze has no loss before it to gain over
  f1 = got[("frame 0", 1)]
  assert (f1["within_1pct"], f1["within_5pct"]) == (0.0, 0.0)
  assert f1["median_gap_over_gain"] == pytest.approx(0.05 / 0.5)  # gap 0.05 of the 0.5 gained
  later = got[("frames 1+", 0)]
  assert (later["within_1pct"], later["within_5pct"]) == (0.0, 1.0)
  assert got[("frames 1+", 1)]["median_gap_over_gain"] == pytest.approx(0.4 / 1.0)
