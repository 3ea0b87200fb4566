"""Loading by hub id from a local hub cache built here (HF_HUB_OFFLINE: no network), and the
one-line error when the checkpoint is neither reachable nor cached."""

import json

import jax
import numpy as np
import pytest

from autogaze_jax import AutoGaze, hub
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import main as cli_main

hf_constants = pytest.importorskip("huggingface_hub.constants")  # optional; requirements.txt pins it for the tests


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
  """An empty hub cache in tmp_path, and no network (the library reads both at import)."""
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
  return tmp_path


def _cache_repo(cache, repo_id, parity_dir):
  """The hub cache's layout: models--owner--name/{refs/main, snapshots/<commit>/files}."""
  commit = "0" * 40
  repo = cache / f"models--{repo_id.replace('/', '--')}"
  snap = repo / "snapshots" / commit
  snap.mkdir(parents=True)
  (repo / "refs").mkdir()
  (repo / "refs" / "main").write_text(commit)
  (snap / "model.safetensors").symlink_to(parity_dir / "gaze_seed0.safetensors")
  cfg = json.loads((parity_dir / "gaze_seed0_config.json").read_text())["hf_config"]
  (snap / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("repo_id", ["nvidia/AutoGaze", "bfshi/AutoGaze"])
def test_hub_id_loads_from_the_local_cache(offline_cache, parity_dir, official_model, repo_id):
  _cache_repo(offline_cache, repo_id, parity_dir)
  assert hub.is_hub_id(repo_id)
  model = AutoGaze.from_pretrained(repo_id, mesh=mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))
  for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(official_model.params)):
    np.testing.assert_array_equal(a, b)


def test_uncached_id_offline_fails_with_one_line_saying_what_to_download(offline_cache, capsys):
  with pytest.raises(ValueError, match=r"no such local path, and as a hub id its config.json is neither reachable "
                                       r"nor in the local hub cache.*https://huggingface.co/nvidia/AutoGaze into a folder"):
    AutoGaze.from_pretrained("nvidia/AutoGaze")
  rc = cli_main.main(["gaze", "--checkpoint", "nvidia/AutoGaze", "--video", "x.mp4"])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and "neither reachable nor in the local hub cache" in err[0]


def test_local_paths_are_not_hub_ids(tmp_path):
  (tmp_path / "a").mkdir()
  assert not hub.is_hub_id(str(tmp_path / "a")) and not hub.is_hub_id("just-a-name")
