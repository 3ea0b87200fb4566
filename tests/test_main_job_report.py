"""The main job's report on hand-made curves: unmeasured budgets (None) stay out of every number
that would need them, and `main-job --pool` tables seeds and refuses what it cannot compare."""

import json

import numpy as np
import pytest

from autogaze_jax.train import main_job, main_job_report

RATIOS = [0.05, 0.1, 0.2, 0.3, 0.5, 1.0]


def _curves(rng, shift: float, clips: int = 12) -> dict:
  base = np.linspace(0.8, 0.4, len(RATIOS)) + rng.normal(0, 0.03, (clips, len(RATIOS)))
  loss = {p: (base + shift * i).tolist() for i, p in enumerate(main_job.POLICIES)}
  loss["oracle"] = [row[:4] + [None, None] for row in (base - 0.2).tolist()]  # past the cap: not measured
  return {"generated": {"ratios": RATIOS, "loss": loss}}


def _write_run(tmp_path, name, seed, rng, shift=0.01):
  rows = main_job_report.summaries(_curves(rng, shift), 0.6)
  diff = {s: main_job_report.differences(r) for s, r in rows.items()}
  report = {"eps": 0.6, "seeds": {"recon": seed}, "test": rows, "test_differences": diff,
            "test_targets": main_job_report.targets(rows["generated"], diff["generated"])}
  (tmp_path / name).mkdir()
  (tmp_path / name / "report.json").write_text(json.dumps(report))
  return report


def test_unmeasured_budgets_leave_the_numbers_that_need_them_out(tmp_path):
  report = _write_run(tmp_path, "a", 0, np.random.default_rng(0))
  oracle = report["test"]["generated"]["oracle"]
  assert oracle["curve"]["mean"][4:] == [None, None] and oracle["curve"]["ci95"][5] is None
  assert oracle["auc"] is not None and oracle["loss_at_0.3"] is not None  # within the measured range
  assert oracle["ratio_at_eps"] < report["test"]["generated"]["random"]["ratio_at_eps"]
  lines = main_job_report.table(report["test"]["generated"], 0.6)
  assert len(lines) == 2 + len(main_job.POLICIES) and "nan" not in "".join(lines)


def test_pool_tables_seeds_and_refuses_what_it_cannot_compare(tmp_path):
  rng = np.random.default_rng(1)
  _write_run(tmp_path, "s0", 0, rng)
  _write_run(tmp_path, "s1", 1, rng)
  pooled = main_job_report.pool([str(tmp_path / "s0"), str(tmp_path / "s1")])
  assert pooled["seeds"] == [0, 1] and pooled["test_pooled_grpo_minus_ntp"]["clips"] == 24
  # policies are 0.01 apart per row of POLICIES: grpo is 0.01 above ntp on every clip
  assert pooled["test_pooled_grpo_minus_ntp"]["excludes_0"] and pooled["test_pooled_grpo_minus_ntp"]["mean"] >= 0
  assert "| mean ± sd |" in main_job_report.pool_markdown(pooled)
  with pytest.raises(ValueError, match="share a seed"):
    main_job_report.pool([str(tmp_path / "s0"), str(tmp_path / "s0")])
  with pytest.raises(ValueError, match="has no report.json"):
    main_job_report.pool([str(tmp_path / "s0"), str(tmp_path / "missing")])
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "report.json").write_text(json.dumps({"eps": 0.6, "ratio_at_eps": {}}))
  with pytest.raises(ValueError, match="older version"):
    main_job_report.pool([str(tmp_path / "s0"), str(tmp_path / "old")])
