"""The main job end to end (`autogaze-jax main-job`), shrunk through its --configs folder, in a
gs:// workdir on a local Cloud Storage emulator: every stage runs, the report compares the
four policies, a rerun resumes instead of redoing, and a workdir refuses another seed."""

import json
import pathlib

import pytest
from etils import epath

from autogaze_jax.cli import config_files
from autogaze_jax.train import main_job

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
         "  c.eval.every, c.eval.num_clips, c.eval.ratios = 2, 2, (0.25, 1.0)",
  "grpo": "  c.steps, c.batch_size, c.checkpoint_every = 2, 1, 2\n"
          "  c.grpo.group_size = 2\n"
          "  c.eval.every, c.eval.num_clips, c.eval.ratios = 2, 1, (0.25, 1.0)",
}


@pytest.mark.slow  # every stage compiles once
def test_main_job_runs_every_stage_reports_and_resumes_in_a_gs_workdir(tmp_path, capsys, gcs_bucket, monkeypatch):
  monkeypatch.chdir(tmp_path)
  configs = tmp_path / "configs"
  configs.mkdir()
  for name, body in BODIES.items():
    (configs / f"{name}.py").write_text(SHRUNK.format(root=ROOT, name=name, body=body))
  work = epath.Path(gcs_bucket) / "main_job"
  report = main_job.run(str(work), config_files.main_job_configs(str(configs), str(work), 1), progress=False)
  gen = report["ratio_at_eps"]["generated"]
  assert set(gen) == {"random", "untrained", "ntp", "grpo"} and all(0 < v <= 1 for v in gen.values())
  assert report["seeds"] == {"recon": 1, "ntp": 1, "grpo": 1}
  assert set(report["wall_s"]) == set(main_job.STAGES)
  for name in ("report.md", "report.json", "ratio_at_eps.png", "gazes_untrained.png", "gazes_ntp.png",
               "gazes_grpo.png", "labels.json", "recon/curve.png", "ntp/gaze_final", "grpo/gaze_final"):
    assert (work / name).exists(), name
  assert list(work.glob("recon/ckpt/*/state")), "Orbax wrote no checkpoint into the bucket"
  assert [p.name for p in tmp_path.iterdir()] == ["configs"], "something was written locally"
  assert "NTP + GRPO" in (work / "report.md").read_text()
  capsys.readouterr()
  again = main_job.run(str(work), config_files.main_job_configs(str(configs), str(work), 1), progress=False)  # nothing left to do
  assert capsys.readouterr().out.count("already done") == len(main_job.STAGES)
  assert again["ratio_at_eps"] == json.loads((work / "report.json").read_text())["ratio_at_eps"]
  with pytest.raises(ValueError, match="--seed 1, not 2"):
    main_job.run(str(work), config_files.main_job_configs(str(configs), str(work), 2), progress=False)
