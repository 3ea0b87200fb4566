"""The main job end to end (`autogaze-jax main-job`), shrunk through its --configs folder, in a
gs:// workdir on a local Cloud Storage emulator: every stage runs, only the final evaluation
reads the test split (training and labelling read train and val), the report compares the six
policies with intervals under `test` keys, a rerun resumes instead of redoing, and a workdir
refuses another seed."""

import json
import pathlib

import numpy as np
import pytest
from etils import epath

from autogaze_jax.cli import config_files
from autogaze_jax.data import pipeline
from autogaze_jax.train import labelling, main_job
from autogaze_jax.train.grpo import trainer as grpo_trainer
from autogaze_jax.train.ntp import trainer as ntp_trainer
from autogaze_jax.train.recon import trainer as recon_trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Config files that load the real ones and shrink them to seconds of work.
SHRUNK = '''
from autogaze_jax.cli import config_files

def get_config(arg="tiny"):
  c = config_files.load("{root}/configs/{name}.py:" + arg)
  c.clip_len, c.data.synthetic_count, c.mesh.shape = 2, 16, (1, 1)
{body}
  return c
'''
BODIES = {
  "recon": "  c.steps, c.batch_size, c.checkpoint_every, c.log_every = 2, 2, 2, 1\n"
           "  c.eval.every, c.eval.num_clips, c.eval.ratios = 2, 1, (0.5,)",
  "ntp": "  c.steps, c.batch_size, c.checkpoint_every, c.log_every = 2, 2, 2, 1\n"
         "  c.label.num_clips, c.label.batch_size, c.label.num_candidates, c.label.chunk = 2, 2, 4, 4\n"
         "  c.eval.every, c.eval.num_clips, c.eval.test_clips, c.eval.ratios = 2, 2, 3, (0.25, 1.0)",
  "grpo": "  c.steps, c.batch_size, c.checkpoint_every = 2, 1, 2\n"
          "  c.grpo.group_size = 2\n"
          "  c.eval.every, c.eval.num_clips, c.eval.ratios = 2, 1, (0.25, 1.0)",
}


def _record_splits(monkeypatch) -> list:
  """[(phase, split)] of every source the run opens; the phase is the stage function running."""
  phase, seen = ["main"], []
  make_source = pipeline.make_source

  def recording(cfg, split="train", seed=0):
    seen.append((phase[0], split))
    return make_source(cfg, split, seed)

  monkeypatch.setattr(pipeline, "make_source", recording)
  def in_phase(fn, name):
    def wrapped(*a, **k):
      phase[0] = name
      try:
        return fn(*a, **k)
      finally:
        phase[0] = "main"
    return wrapped

  for module, fn, name in ((recon_trainer, "train", "recon"), (labelling, "run", "labels"),
                           (ntp_trainer, "train", "ntp"), (grpo_trainer, "train", "grpo"),
                           (main_job, "evaluate", "eval")):
    monkeypatch.setattr(module, fn, in_phase(getattr(module, fn), name))
  return seen


@pytest.mark.slow  # every stage compiles once
def test_main_job_runs_every_stage_reports_and_resumes_in_a_gs_workdir(tmp_path, capsys, gcs_bucket, monkeypatch):
  monkeypatch.chdir(tmp_path)
  configs = tmp_path / "configs"
  configs.mkdir()
  for name, body in BODIES.items():
    (configs / f"{name}.py").write_text(SHRUNK.format(root=ROOT, name=name, body=body))
  work = epath.Path(gcs_bucket) / "main_job"
  splits = _record_splits(monkeypatch)
  report = main_job.run(str(work), config_files.main_job_configs(str(configs), str(work), 1), progress=False)
  # Tuning paths read only train and val; the test split is read by the final evaluation alone.
  assert {s for p, s in splits if p != "eval"} == {"train", "val"}, splits
  assert {s for p, s in splits if p == "eval"} == {"test"}, splits
  assert {p for p, _ in splits} == {"recon", "labels", "ntp", "grpo", "eval"}, splits
  rows = report["test"]["generated"]
  assert set(rows) == set(main_job.POLICIES) and set(report["test"]) == {"generated", "real"}
  for row in rows.values():
    assert 0 < row["ratio_at_eps"] <= 1 and len(row["per_clip_ratio"]) == 3
    lo, hi = row["ratio_at_eps_ci95"]
    assert lo <= row["ratio_at_eps"] <= hi and 0 <= row["reach_fraction"] <= 1
    assert {"auc", "auc_ci95", "loss_at_0.1", "loss_at_0.2", "loss_at_0.3", "curve"} <= set(row)
    assert all(np.isfinite(row[k]) for k in ("auc", "loss_at_0.1", "loss_at_0.2", "loss_at_0.3"))
  assert set(report["test_differences"]["generated"]) >= {"grpo_minus_ntp", "ntp_minus_random"}
  assert {"ntp_over_random", "grpo_minus_ntp_interval_excludes_0", "ntp_recovers_of_oracle_saving"} <= set(
    report["test_targets"])
  curve = report["grpo_val_greedy_loss_by_step"]
  assert [s for s, _ in curve["grpo"]] == [0, 2] and [s for s, _ in curve["grpo_untrained"]] == [0, 2]
  assert report["seeds"] == {"recon": 1, "ntp": 1, "grpo": 1, "grpo_untrained": 1}
  assert report["ntp_dagger_round"]["step"] == 1  # tiny's round after 0.7 of NTP's 2 steps
  assert set(report["wall_s"]) == set(main_job.STAGES)
  for name in ("report.md", "report.json", "heldout_curves.json", "loss_vs_ratio.png", "grpo_heldout.png",
               *(f"gazes_{p}.png" for p in main_job.POLICIES), "labels.json", "recon/curve.png",
               "ntp/gaze_final", "grpo/gaze_final", "grpo_untrained/gaze_final"):
    assert (work / name).exists(), name
  assert list(work.glob("recon/ckpt/*/state")), "Orbax wrote no checkpoint into the bucket"
  assert [p.name for p in tmp_path.iterdir()] == ["configs"], "something was written locally"
  assert "GRPO from untrained" in (work / "report.md").read_text()
  capsys.readouterr()
  again = main_job.run(str(work), config_files.main_job_configs(str(configs), str(work), 1), progress=False)  # nothing left to do
  assert capsys.readouterr().out.count("already done") == len(main_job.STAGES)
  assert again["test"] == json.loads((work / "report.json").read_text())["test"]
  with pytest.raises(ValueError, match="--seed 1, not 2"):
    main_job.run(str(work), config_files.main_job_configs(str(configs), str(work), 2), progress=False)
