"""Test setup: JAX on CPU with 8 fake devices, shared fixtures (tiny models, parity data)."""

import atexit
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the session and for the subprocesses that tests
# start (kill and resume, multi-host): a program compiled once is loaded, not recompiled.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="autogaze_jax_xla_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Most of the suite's time is XLA compiling tiny programs; LLVM's lowest optimisation level
# compiles them about a third faster (numerics unchanged: no fast-math either way), and the
# tests' subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax

jax.config.update("jax_num_cpu_devices", 8)

from absl import flags  # noqa: E402

flags.FLAGS(sys.argv[:1], known_only=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
# Reference outputs of the official code; another folder of the same layout can stand in.
PARITY = pathlib.Path(os.environ.get("AUTOGAZE_REFERENCE_DIR", SHARED / "data" / "parity"))
# CI sets this: a missing reference folder is then an error instead of a skip.
REQUIRE_REFERENCE = os.environ.get("AUTOGAZE_REQUIRE_REFERENCE", "") not in ("", "0")


@pytest.fixture(scope="session")
def gcs_bucket():
  """'gs://autogaze-test': a bucket on a local Cloud Storage emulator (tests/helpers/gcs_emulator.py)
  that gcsfs (etils.epath, our files) and TensorStore (Orbax's arrays) are both pointed at, so
  gs:// workdirs are exercised over the JSON API without a cloud."""
  from helpers import gcs_emulator

  server, url = gcs_emulator.start("autogaze-test")
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "x"}
  before = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield "gs://autogaze-test"
  server.stop()
  for k, v in before.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


@pytest.fixture(scope="session")
def parity_dir():
  if not PARITY.is_dir():
    if REQUIRE_REFERENCE:
      pytest.fail(f"reference data not found at {PARITY} (AUTOGAZE_REQUIRE_REFERENCE is set)")
    pytest.skip(f"reference data not found at {PARITY} (set AUTOGAZE_REFERENCE_DIR)")
  return PARITY


def _official_folder(parity_dir, tmp_path_factory, name: str):
  """Reference weights `<name>.safetensors` laid out like an official folder: model.safetensors
  (a link) + config.json (the `hf_config` of `<name>_config.json`)."""
  import json

  d = tmp_path_factory.mktemp(name)
  (d / "model.safetensors").symlink_to(parity_dir / f"{name}.safetensors")
  cfg = json.loads((parity_dir / f"{name}_config.json").read_text())
  (d / "config.json").write_text(json.dumps(cfg["hf_config"]))
  return d


@pytest.fixture(scope="session")
def official_dir(parity_dir, tmp_path_factory):
  """The parity gaze weights laid out like a downloaded release."""
  return _official_folder(parity_dir, tmp_path_factory, "gaze_seed0")


@pytest.fixture(scope="session")
def official_recon_dir(parity_dir, tmp_path_factory):
  """The reference tiny VideoMAE laid out like an official reconstructor folder."""
  return _official_folder(parity_dir, tmp_path_factory, "recon_tiny_seed0")


@pytest.fixture(scope="session")
def official_model(official_dir):
  from autogaze_jax import AutoGaze
  from autogaze_jax import mesh as mesh_lib

  return AutoGaze.from_pretrained(str(official_dir), mesh=mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1]))


def make_tiny(seed=0, mesh=None, head_scale=40.0, task_scale=5.0):
  """A tiny random gaze model whose heads are scaled up so decoding is non-degenerate."""
  from flax import nnx

  from autogaze_jax import AutoGaze
  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax.models import gaze_config

  mesh = mesh or mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  g = AutoGaze.from_config(gaze_config.tiny_config(), seed=seed, mesh=mesh)
  model = g.model
  dec = model.gaze_decoder
  dec.lm_head.kernel[...] = dec.lm_head.kernel[...] * head_scale
  dec.task_loss_prediction_head.kernel[...] = dec.task_loss_prediction_head.kernel[...] * task_scale
  return g.with_params(nnx.state(model, nnx.Param))


@pytest.fixture(scope="session")
def tiny():
  return make_tiny()


@pytest.fixture(scope="session")
def tiny_video():
  rng = np.random.default_rng(0)
  return rng.normal(size=(3, 6, 3, 64, 64)).astype(np.float32)
