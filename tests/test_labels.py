"""gazing_labels.json (and its ArrayRecord form): read/write, key reduction and merging, validation errors, collation."""

import json

import numpy as np
import pytest

from autogaze_jax.data import labels

V = 20
A = {"gazing_pos": [[3, 7], [25]], "task_losses": [[0.9, 0.5], [0.4]]}
B = {"gazing_pos": [[1], [20, 39, 22, 30]], "task_losses": [[0.8], [0.7, 0.6, 0.5, 0.3]]}


def test_write_read_round_trip(tmp_path):
  path = tmp_path / "sub" / "labels.json"
  labels.write(str(path), {"ds/train/a.mp4": A, "ds/train/b.mp4": B})
  assert labels.read(str(path)) == {"ds/train/a.mp4": A, "ds/train/b.mp4": B}


def _with_candidates(entry):
  """`entry` with candidate losses: step s of frame t gives id v the loss 1 + v / 100 + s, the
  ids chosen before that step None."""
  out = dict(entry, candidate_losses=[])
  for t, ids in enumerate(entry["gazing_pos"]):
    chosen, steps = set(), []
    for s, g in enumerate(ids):
      steps.append([None if v in chosen else 1 + v / 100 + s for v in range(V)])
      chosen.add(g - t * V)
    out["candidate_losses"].append(steps)
  return out


def test_candidate_losses_round_trip_and_their_array(tmp_path):
  a = _with_candidates(A)
  labels.write(str(tmp_path / "c.json"), {"ds/train/a.mp4": a, "ds/train/b.mp4": B})
  back = labels.read(str(tmp_path / "c.json"))
  assert back["ds/train/a.mp4"] == a and "candidate_losses" not in back["ds/train/b.mp4"]
  arr = labels.candidate_array(a, V, slots=3)
  assert arr.shape == (2, 3, V) and arr.dtype == np.float32
  np.testing.assert_allclose(arr[0, 0], 1 + np.arange(V) / 100, rtol=1e-6)
  assert np.isinf(arr[0, 1, 3]) and np.isfinite(arr[0, 1, 7])  # id 3 was chosen at step 0
  assert np.isinf(arr[0, 2]).all() and np.isinf(arr[1, 1:]).all()  # slots past the frame's list
  with pytest.raises(ValueError, match="no candidate_losses"):
    labels.candidate_array(B, V, slots=3)
  bad = dict(a, candidate_losses=[a["candidate_losses"][0], [[0.5] * (V - 1)]])
  with pytest.raises(ValueError, match="frame 1's candidate_losses must hold one list of 20"):
    labels.validate_entry("x", bad, 2, V)


def test_array_record_shards_read_like_the_json(tmp_path):
  """Large runs: one ArrayRecord shard per labelling host, read back through a glob, gives
  the same labels as the JSON; mixed lists work; a broken file is named."""
  labels.write(str(tmp_path / "labels-0.array_record"), {"/data/ds/train/a.mp4": A})
  labels.write(str(tmp_path / "labels-1.array_record"), {"/data/ds/train/b.mp4": B})
  got = labels.read(f"{tmp_path}/labels-*.array_record")
  assert got == {"ds/train/a.mp4": A, "ds/train/b.mp4": B}
  labels.write(str(tmp_path / "c.json"), {"ds/train/c.mp4": A})
  assert labels.read(f"{tmp_path}/labels-0.array_record,{tmp_path}/c.json") == {"ds/train/a.mp4": A, "ds/train/c.mp4": A}
  (tmp_path / "bad.array_record").write_bytes(b"not a record file")
  with pytest.raises(ValueError, match="bad.array_record"):
    labels.read(str(tmp_path / "bad.array_record"))


def test_keys_reduced_and_later_files_override(tmp_path):
  (tmp_path / "one.json").write_text(json.dumps({"/data/x/ds/train/a.mp4": A, "/data/ds/train/b.mp4": A}))
  (tmp_path / "two.json").write_text(json.dumps({"/other/root/ds/train/b.mp4": B}))
  got = labels.read(f"{tmp_path}/one.json,{tmp_path}/two.json")
  assert got == {"ds/train/a.mp4": A, "ds/train/b.mp4": B}
  assert labels.read(f"{tmp_path}/*.json") == got  # glob patterns, sorted
  assert labels.key_of("a.mp4") == "a.mp4" and labels.key_of("/r/d/s/f.mp4") == "d/s/f.mp4"


def test_collate_hand_example():
  out = labels.collate([A, B], V, slots=labels.slot_cap({"a": A, "b": B}, k=3))
  ids, lens, tl = out["ids"], out["lens"], out["task_losses"]
  assert ids.shape == (2, 2, 6) and ids.dtype == np.int32  # longest frame 4 -> 2 blocks of K=3
  np.testing.assert_array_equal(ids[0], [[3, 7, V, V, V, V], [5, V, V, V, V, V]])
  np.testing.assert_array_equal(ids[1], [[1, V, V, V, V, V], [0, 19, 2, 10, V, V]])
  np.testing.assert_array_equal(lens, [[2, 1], [1, 4]])
  np.testing.assert_allclose(tl[0], [[0.9, 0.5, 0.5, 0.5, 0.5, 0.5], [0.4] * 6])  # padded with last value
  np.testing.assert_allclose(tl[1, 1], [0.7, 0.6, 0.5, 0.3, 0.3, 0.3])
  back = labels.from_arrays(ids[1], lens[1], tl[1], V)
  assert back["gazing_pos"] == B["gazing_pos"]
  np.testing.assert_allclose(back["task_losses"][1], B["task_losses"][1], rtol=1e-6)


def test_a_pad_between_gazes_keeps_its_slot():
  """The official collate reads -1 in a frame's list as a pad: its slot stays (so the gazes
  after it keep their place in the blocks of K) and reads back as -1."""
  c = {"gazing_pos": [[3, -1, 7], [25, 21]], "task_losses": [[0.9, 0.9, 0.5], [0.4, 0.3]]}
  out = labels.collate([c], V, slots=labels.slot_cap({"c": c}, k=3))
  np.testing.assert_array_equal(out["ids"][0], [[3, V, 7], [5, 1, V]])
  np.testing.assert_array_equal(out["lens"][0], [3, 2])
  assert labels.from_arrays(out["ids"][0], out["lens"][0], out["task_losses"][0], V)["gazing_pos"] == c["gazing_pos"]


@pytest.mark.parametrize("entry, frames, message", [
  ({"gazing_pos": [[3], [-1]], "task_losses": [[0.1], [0.2]]}, 2, "frame 1 has only pads"),
  ({"gazing_pos": [[3, -2], [21]], "task_losses": [[0.1, 0.1], [0.2]]}, 2, "holds -2, not a global id"),
  ({"gazing_pos": [[3, -1, -1], [21]], "task_losses": [[0.1] * 3, [0.2]]}, 2, None),
  ({"gazing_pos": [[3], [4]], "task_losses": [[0.1], [0.2]]}, 2, "not a global id in \\[20, 40\\)"),
  ({"gazing_pos": [[3], []], "task_losses": [[0.1], []]}, 2, "frame 1 has no gazes"),
  ({"gazing_pos": [[3, 4], [21]], "task_losses": [[0.1], [0.2]]}, 2, "2 gazes but 1 task_losses"),
  ({"gazing_pos": [[3], [21]], "task_losses": [[0.1], [0.2]]}, 3, "expected 3 frames"),
  ({"gazing_pos": [[3, 3], [21]], "task_losses": [[0.1, 0.1], [0.2]]}, 2, "repeats a gaze"),
  ({"gazing_pos": [[3]]}, 1, "needs keys"),
])
def test_validation_errors_name_the_problem(entry, frames, message):
  if message is None:  # valid: several pads are not repeated gazes
    labels.validate_entry("ds/train/x.mp4", entry, frames, V)
    return
  with pytest.raises(ValueError, match=message):
    labels.validate_entry("ds/train/x.mp4", entry, frames, V)


def test_collate_errors(tmp_path):
  with pytest.raises(ValueError, match="more than the 3 slots"):
    labels.collate([B], V, slots=3)
  with pytest.raises(ValueError, match="different frame counts"):
    labels.collate([A, {"gazing_pos": [[1]], "task_losses": [[0.5]]}], V, slots=6)
  with pytest.raises(FileNotFoundError, match="no file matches"):
    labels.read(f"{tmp_path}/none*.json")
  (tmp_path / "bad.json").write_text("[1, 2]")
  with pytest.raises(ValueError, match="one JSON object"):
    labels.read(str(tmp_path / "bad.json"))
