"""NTP stage: label -> train end to end on tiny synthetic clips (artifacts, exact resume); the
labelled batches of the data pipeline."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from autogaze_jax import AutoGaze
from autogaze_jax.cli import config_files
from autogaze_jax.data import labels, pipeline
from autogaze_jax.train import labelling
from autogaze_jax.train.ntp import trainer as ntp_trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
V, K = 20, 3


def tiny_cfg():
  cfg = config_files.load(f"{ROOT}/configs/ntp.py:tiny")
  cfg.gaze.decoder.num_multi_token_pred = K  # slots pad to a multiple of K: exercised at K = 3
  cfg.dagger.start = 0.0  # the DAgger round needs K = 1 (tests/test_dagger.py)
  cfg.clip_len, cfg.batch_size, cfg.micro_batch_size = 2, 4, 2
  cfg.data.synthetic_count = 32
  cfg.steps, cfg.log_every, cfg.checkpoint_every = 3, 1, 2
  cfg.label.num_clips, cfg.label.batch_size, cfg.label.num_candidates, cfg.label.chunk = 4, 4, 4, 4
  cfg.label.budget, cfg.label.budget_ratio_first, cfg.label.budget_ratio = "fixed", 0.2, 0.1
  cfg.eval.every, cfg.eval.num_clips, cfg.eval.ratios, cfg.eval.frames = 3, 2, (0.1, 0.5), (0, 1)
  cfg.mesh.shape = (1, 1)
  return cfg


def loss_rows(workdir):
  rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["ntp_loss"] for r in rows if "ntp_loss" in r}


@pytest.mark.slow  # label, train, evaluate, save and resume: several compiles
def test_label_then_train(tmp_path):
  cfg = tiny_cfg()
  out = tmp_path / "labels.json"
  summary = labelling.run(cfg, str(out), progress=False)  # random reconstructor (smoke)
  assert summary["clips"] == 4 and summary["budgets"] == [4, 2]
  source = pipeline.make_source(cfg.data, "train", cfg.seed)
  assert sorted(labels.read(str(out))) == [labels.key_of(source.key(i)) for i in range(4)]
  cfg.labels = str(out)
  report = ntp_trainer.train(cfg, str(tmp_path / "ntp"), progress=False)
  assert report["slots_per_frame"] == 6 and report["eval_final"]["eval_ratio_at_eps"] <= 1.0
  losses = loss_rows(tmp_path / "ntp")
  assert sorted(losses) == [1, 2, 3] and all(np.isfinite(list(losses.values())))
  # eval every 3 steps: at steps 0 and 3, each with a picture of the current policy's gazes
  assert sorted(p.name for p in (tmp_path / "ntp" / "pictures").glob("*.png")) == [
    "gazes_step000000.png", "gazes_step000003.png"]
  gazer = AutoGaze.from_pretrained(str(tmp_path / "ntp" / "gaze_final"))
  assert gazer.config.decoder.num_multi_token_pred == 3
  # As if stopped after the step-2 checkpoint, then rerun: the data iterator resumes too.
  resumed = tmp_path / "resumed"
  shutil.copytree(tmp_path / "ntp", resumed)
  shutil.rmtree(resumed / "ckpt" / "3"), shutil.rmtree(resumed / "gaze_final")
  (resumed / "metrics.jsonl").unlink()
  ntp_trainer.train(cfg, str(resumed), progress=False)
  assert loss_rows(resumed) == {3: losses[3]}


def write_labels(path, keys):
  entry = {"gazing_pos": [[0, 5], [21]], "task_losses": [[1.0, 0.5], [0.7]]}
  labels.write(str(path), {k: entry for k in keys})
  return entry


def test_batches_are_the_labelled_clips_with_their_labels(tmp_path):
  cfg = tiny_cfg()
  cfg.batch_size, cfg.data.synthetic_count = 2, 5
  cfg.data.label_symmetries = ""  # the labels as written (their symmetries: tests/test_symmetries.py)
  source = pipeline.make_source(cfg.data, "train", cfg.seed)
  with pytest.raises(ValueError, match="no labels"):
    ntp_trainer.labelled_batches(cfg, source, V, K)
  cfg.labels = str(tmp_path / "l.json")
  entry = write_labels(cfg.labels, [source.key(1), source.key(3)])
  batches, slots = ntp_trainer.labelled_batches(cfg, source, V, K)[:2]
  assert slots == K
  ids, lens, losses = labels.to_arrays(entry, V, slots)
  for _ in range(3):
    element = next(batches)
    assert set(element["index"].tolist()) <= {1, 3}
    batch = ntp_trainer.step_batch(element)
    assert batch["video"].shape == (2, 2, 64, 64, 3) and batch["video"].dtype == np.uint8
    np.testing.assert_array_equal(batch["ids"], np.broadcast_to(ids, (2, *ids.shape)))
    np.testing.assert_array_equal(batch["lens"], np.broadcast_to(lens, (2, *lens.shape)))
    np.testing.assert_allclose(batch["task_losses"], np.broadcast_to(losses, (2, *losses.shape)))
  state = batches.get_state()  # the loop checkpoints this position
  want = next(batches)["index"]
  batches.set_state(state)
  np.testing.assert_array_equal(next(batches)["index"], want)
  cfg.clip_len = 3
  with pytest.raises(ValueError, match="expected 3 frames"):
    ntp_trainer.labelled_batches(cfg, pipeline.make_source(cfg.data, "train", cfg.seed), V, K)


def test_ratio_at_eps_interpolates_the_first_crossing():
  from autogaze_jax.train import clip_stats

  loss = np.array([[1.0, 0.8, 0.6],    # crosses 0.7 halfway between budgets 4 and 8
                   [0.65, 0.6, 0.5],   # the first budget already reaches
                   [0.9, 0.8, 0.75],   # never reaches
                   [1.0, 0.6, 0.9]])   # the first crossing counts, not a later rise
  got = clip_stats.ratio_at_eps(loss, (2 / 8, 4 / 8, 8 / 8), 0.7)  # budgets 2, 4, 8 of V = 8
  np.testing.assert_allclose(got, [0.75, 0.25, 1.0, 0.25 + 0.25 * 0.75], rtol=1e-6)
