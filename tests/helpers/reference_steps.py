"""Set-up shared by the training-step reference tests (`train_ntp_*`, `train_grpo_*` in the
reference folder): the inputs rebuilt as the reference says and checked by hash, the gaze
model from the reference's weights, its gradients brought into our layout, the official
per-slot layout, and full-optimisation compiles for the two big steps.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.weights import gaze as gaze_weights
from autogaze_jax.weights import mapping


def load_case(ref_dir: pathlib.Path, name: str):
  """(arrays of `<name>.npz`, its `<name>_config.json`)."""
  arrays = dict(np.load(ref_dir / f"{name}.npz"))
  return arrays, json.loads((ref_dir / f"{name}_config.json").read_text())


def _sha(x) -> str:
  return hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()


def inputs(ref_dir: pathlib.Path, case: dict):
  """(video, video_for_task) of the step: `clip16.npz` and the same clip flipped left-right,
  as the reference's recipe says; the reference's sha256 of each must match."""
  clip = np.load(ref_dir / "clip16.npz")
  video = np.concatenate([clip["video"], clip["video"][..., ::-1]])
  task = np.concatenate([clip["video_for_task"], clip["video_for_task"][..., ::-1]])
  for name, x in (("video", video), ("video_for_task", task)):
    assert _sha(x) == str(case[f"{name}_sha256"]), (
      f"{name} rebuilt from clip16.npz (+ its flip) is not the reference's input; recipe: {case['input_recipe']}")
  return video, task


def official_flag(algorithm: str, name: str) -> bool:
  """A boolean keyword of the reference's algorithm string, e.g. 'NTP(optimize_task_loss_prediction=True)'."""
  m = re.search(rf"{name}=(True|False)", algorithm)
  assert m, f"{name} not found in {algorithm!r}"
  return m.group(1) == "True"


def gaze_model(ref_dir: pathlib.Path, step_cfg: dict):
  """(config, GazeModel) with the reference's weights: the files of `gaze_weights`, later
  ones overwriting earlier tensors; the architecture from the first file's config JSON."""
  files = step_cfg["gaze_weights"]
  hf = json.loads((ref_dir / files[0].replace(".safetensors", "_config.json")).read_text())["hf_config"]
  cfg = gaze_weights.config_from_official(hf)
  tensors = {}
  for f in files:
    tensors.update(load_file(str(ref_dir / f)))
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    model = GazeModel(cfg, nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  arrays = gaze_weights.convert_state_dict(tensors, mapping.expected_shapes(params), cfg)
  nnx.update(model, mapping.load_into(params, arrays))
  return cfg, model


def reference_grads(ref_dir: pathlib.Path, name: str, params, cfg) -> dict:
  """The reference gradients (official names and PyTorch layouts) in our parameter layout,
  through the same mapping that imports the official weights (the layout changes are
  transposes, so gradients map like parameters)."""
  tensors = load_file(str(ref_dir / f"{name}_grads.safetensors"))
  return gaze_weights.convert_state_dict(tensors, mapping.expected_shapes(params), cfg)


def assert_grads_close(grads, want: dict, rel: float) -> dict:
  """Every parameter's gradient within atol = rel * max|g_ref| of the reference; returns
  {path: error / scale} for the report."""
  flat = {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(grads)}
  assert set(flat) == set(want), sorted(set(flat) ^ set(want))[:3]
  ratios = {}
  for path, ref in want.items():
    scale = float(np.abs(ref).max())
    assert scale > 0, f"reference gradient of {path} is all zero"
    np.testing.assert_allclose(flat[path], ref, rtol=0, atol=rel * scale, err_msg="/".join(map(str, path)))
    ratios[path] = float(np.abs(flat[path] - ref).max()) / scale
  return ratios


def official_layout(x, num_gazing_each_frame):
  """(N, T, S) per-frame slots (or (N, T * S)) -> (N, sum n_t): frame t's first n_t slots,
  frame-major, the official layout of per-slot arrays."""
  n_t = np.asarray(num_gazing_each_frame)
  x = np.asarray(x)
  x = x.reshape(x.shape[0], n_t.shape[0], -1)
  return np.concatenate([x[:, t, : n_t[t]] for t in range(n_t.shape[0])], 1)


def compile_optimised(fn, *args):
  """`jax.jit(fn)` compiled for `args` at XLA's full backend optimisation. The suite compiles
  at level 0 (tests/conftest.py), which makes these 224-pixel, 16-frame steps run for many
  minutes instead of one or two."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 3})
