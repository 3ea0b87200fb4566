"""NTP stage: label -> train end to end on tiny synthetic clips; artifacts; the label CLI path."""

import json
import pathlib

import numpy as np
import pytest

from autogaze_jax import AutoGaze, cli, labels
from autogaze_jax.train import greedy_labels, ntp_stage, synthetic_clips

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_cfg():
  cfg = cli.load_config_file(f"{ROOT}/configs/ntp.py:tiny")
  cfg.clip_len, cfg.batch_size, cfg.micro_batch_size = 2, 4, 2
  cfg.steps, cfg.log_every, cfg.checkpoint_every = 3, 1, 3
  cfg.label.num_clips, cfg.label.batch_size, cfg.label.num_candidates, cfg.label.chunk = 4, 4, 4, 4
  cfg.label.budget_ratio_first, cfg.label.budget_ratio = 0.2, 0.1
  cfg.eval.every, cfg.eval.num_clips, cfg.eval.ratios, cfg.eval.frames = 3, 2, (0.1, 0.5), (0, 1)
  cfg.mesh.shape = (1, 1)
  return cfg


@pytest.mark.slow  # label, train, evaluate and save: several compiles
def test_label_then_train(tmp_path):
  cfg = tiny_cfg()
  out = tmp_path / "labels.json"
  summary = greedy_labels.run(cfg, "", str(out), progress=False)  # random reconstructor (smoke)
  assert summary["clips"] == 4 and summary["budgets"] == [4, 2]
  entries = labels.read(str(out))
  assert sorted(entries) == sorted(synthetic_clips.key(s) for s in range(4))
  cfg.labels = str(out)
  report = ntp_stage.train(cfg, str(tmp_path / "ntp"), progress=False)
  assert report["slots_per_frame"] == 6 and report["eval_final"]["eval_ratio_at_eps"] <= 1.0
  rows = [json.loads(x) for x in (tmp_path / "ntp" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "ntp_loss" in r] == [1, 2, 3]
  assert all(np.isfinite(r["ntp_loss"]) for r in rows if "ntp_loss" in r)
  gazer = AutoGaze.from_pretrained(str(tmp_path / "ntp" / "gaze_final"))
  assert gazer.config.decoder.num_multi_token_pred == 3


def test_batches_cover_each_epoch_once():
  keys = [f"k{i}" for i in range(10)]
  seen = sum((ntp_stage.batch_keys(keys, 0, s, 5) for s in range(2)), [])
  assert sorted(seen) == keys
  assert ntp_stage.batch_keys(keys, 0, 2, 5) != ntp_stage.batch_keys(keys, 0, 0, 5)  # reshuffled
