"""SIGKILL a training run mid-way, rerun the same command: it resumes from the last checkpoint
and ends with parameters bitwise equal to an uninterrupted run (CPU)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from autogaze_jax import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(config: str, workdir, overrides):
  return [sys.executable, "-m", "autogaze_jax.cli", "train", "--config", config, "--workdir", str(workdir),
          *overrides]


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)


def _kill_after_checkpoint(cmd, workdir, step: int, timeout: float = 300):
  proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
  marker = os.path.join(workdir, "ckpt", str(step))
  t0 = time.time()
  while not os.path.isdir(marker) or not any(f.startswith("commit_success") for f in os.listdir(marker)):
    if proc.poll() is not None:
      pytest.fail(f"training ended before step {step} was checkpointed: {proc.stderr.read().decode()[-2000:]}")
    if time.time() - t0 > timeout:
      proc.kill()
      pytest.fail("timed out waiting for the checkpoint")
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  return proc.returncode


@pytest.mark.parametrize("config,overrides", [
  ("configs/recon.py:tiny", ["--config.steps=12", "--config.checkpoint_every=3", "--config.batch_size=2",
                             "--config.log_every=3", "--config.eval.every=100", "--config.eval.num_clips=1"]),
])
def test_sigkill_then_rerun_ends_bitwise_equal(tmp_path, config, overrides):
  full, killed = tmp_path / "full", tmp_path / "killed"
  run = subprocess.run(_command(config, full, overrides), env=_env(), capture_output=True, text=True, cwd=ROOT)
  assert run.returncode == 0, run.stderr[-3000:]
  assert _kill_after_checkpoint(_command(config, killed, overrides), str(killed), 3) == -signal.SIGKILL
  done = subprocess.run(_command(config, killed, overrides), env=_env(), capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  resumed_at = int(done.stderr.split("resuming from step ")[1].split()[0])
  assert 3 <= resumed_at < 12
  a, b = checkpointing.info(str(full)), checkpointing.info(str(killed))
  assert a["step"] == b["step"] == 12
  assert a["sha256"] == b["sha256"], done.stderr[-2000:]
