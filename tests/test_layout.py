"""The house rules: the layer contracts of `.importlinter` hold (and would catch a break), and
importing a config or a submodule loads nothing heavy."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(cwd) -> subprocess.CompletedProcess:
  return subprocess.run(LINT + ["--config", str(ROOT / ".importlinter"), "--no-cache"], cwd=cwd,
                        capture_output=True, text=True, env={"PYTHONPATH": str(cwd), "PATH": ""})


def test_layer_contracts_hold():
  out = _lint(ROOT)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "0 broken" in out.stdout


def test_a_model_importing_the_trainer_breaks_the_contracts(tmp_path):
  shutil.copytree(ROOT / "autogaze_jax", tmp_path / "autogaze_jax", ignore=shutil.ignore_patterns("__pycache__"))
  layers = tmp_path / "autogaze_jax" / "models" / "layers.py"
  layers.write_text(layers.read_text() + "\nfrom autogaze_jax.train import loop  # noqa\n")
  out = _lint(tmp_path)
  assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout
  assert "autogaze_jax.models.layers -> autogaze_jax.train.loop" in out.stdout


def test_a_circle_breaks_the_contracts(tmp_path):
  shutil.copytree(ROOT / "autogaze_jax", tmp_path / "autogaze_jax", ignore=shutil.ignore_patterns("__pycache__"))
  sources = tmp_path / "autogaze_jax" / "data" / "sources.py"  # tfds_build already imports sources
  sources.write_text(sources.read_text() + "\nfrom autogaze_jax.data import tfds_build  # noqa\n")
  out = _lint(tmp_path)
  assert out.returncode != 0 and "No import circles" in out.stdout and "BROKEN" in out.stdout, out.stdout


def test_configs_and_submodules_load_nothing_heavy():
  code = ("import sys; from autogaze_jax.cli import config_files; import autogaze_jax.models.gaze_config; "
          f"[config_files.load('{ROOT}/configs/' + c) for c in ('recon.py:tiny', 'ntp.py:tiny', 'grpo.py:official')]; "
          "heavy = [m for m in ('jax', 'flax', 'orbax.checkpoint', 'grain', 'optax') if m in sys.modules]; "
          "print(heavy); sys.exit(bool(heavy))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert out.returncode == 0, out.stdout + out.stderr
