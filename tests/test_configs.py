"""The shipped stage configs: the `paper` variants differ from `official` (the released scripts)
in exactly the fields the paper's Appendix B changes, and an unknown variant is refused."""

import pytest

from autogaze_jax.cli import config_files


def _flat(c, prefix=""):
  out = {}
  for k, v in c.items():
    if hasattr(v, "items"):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


@pytest.mark.parametrize("stage, changed", [
  ("ntp", {"batch_size": 256, "micro_batch_size": 0, "steps": 146_500, "label.budget": "dirichlet"}),
  ("grpo", {"batch_size": 256, "steps": 1_500, "grpo.temp_start": 1.0, "grpo.temp_end": 0.01}),
])
def test_paper_variant_differs_from_official_only_where_the_paper_does(stage, changed):
  official = _flat(config_files.load(f"configs/{stage}.py:official"))
  paper = _flat(config_files.load(f"configs/{stage}.py:paper"))
  assert set(paper) == set(official)
  assert {k for k in paper if paper[k] != official[k]} == set(changed)
  assert {k: paper[k] for k in changed} == changed


def test_an_unknown_variant_names_the_choices():
  with pytest.raises(ValueError, match="unknown variant 'papr'.*paper"):
    config_files.load("configs/ntp.py:papr")
