"""Outputs in an object store (gs:// on the local emulator) and on local disk through the same
calls: metrics rows append, TensorBoard events are mirrored, labels shards are globbed, and
nothing lands in a local 'gs:' folder."""

import numpy as np
import pytest

from autogaze_jax import storage
from autogaze_jax.data import labels
from autogaze_jax.train import metric_log


def _entry(frames=2, vocab=5):
  return {"gazing_pos": [[t * vocab + 1, t * vocab + 3] for t in range(frames)],
          "task_losses": [[0.5, 0.25] for _ in range(frames)]}


@pytest.mark.parametrize("where", ["local", "gs"])
def test_metrics_rows_append_and_tensorboard_events_arrive(where, tmp_path, monkeypatch, gcs_bucket):
  monkeypatch.chdir(tmp_path)
  workdir = f"{gcs_bucket}/metrics_run" if where == "gs" else str(tmp_path / "run")
  writer = metric_log.Writer(workdir)
  for step in range(3):
    writer.write(step, {"loss": np.float32(1.0 / (step + 1))})
  writer.close()
  again = metric_log.Writer(workdir)  # a resumed run appends to the same file
  again.write(3, {"loss": 0.2})
  again.close()
  rows = metric_log.read(f"{workdir}/metrics.jsonl")
  assert [r["step"] for r in rows] == [0, 1, 2, 3]
  assert rows[1]["loss"] == pytest.approx(0.5)
  events = [p for p in storage.path(f"{workdir}/tb").iterdir() if "tfevents" in p.name]
  assert len(events) == 2 and all(p.stat().length > 0 for p in events)
  assert not (tmp_path / "gs:").exists()


def test_labels_shards_in_a_bucket_are_read_through_a_glob(gcs_bucket):
  for i in range(3):
    labels.write(f"{gcs_bucket}/labels/part-{i}.json", {f"data/train/clip{i}.mp4": _entry()})
  got = labels.read(f"{gcs_bucket}/labels/part-*.json")
  assert sorted(got) == [f"data/train/clip{i}.mp4" for i in range(3)]
  assert got["data/train/clip1.mp4"]["gazing_pos"] == _entry()["gazing_pos"]
  with pytest.raises(FileNotFoundError, match="no file matches"):
    labels.read(f"{gcs_bucket}/labels/other-*.json")
  with pytest.raises(ValueError, match="only be in the last path component"):
    labels.read(f"{gcs_bucket}/*/part-0.json")
  with pytest.raises(ValueError, match="ArrayRecord labels need a local or mounted path"):
    labels.write(f"{gcs_bucket}/labels/part.array_record", {"a/b/c.mp4": _entry()})
