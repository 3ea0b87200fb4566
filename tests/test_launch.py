"""The launch scripts against stand-ins for gcloud, xpk, sbatch/srun and pip: each stand-in
records its arguments and, where the real tool would run a command somewhere (a TPU worker over
ssh, a container, a SLURM node), runs it here. What is checked is the scripts' own logic: the
code reaches the worker, and every worker / container / node ends up running
`autogaze-jax <the user's arguments, quoting intact> --multihost`."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
USER_ARGS = ["train", "--config", "configs/ntp.py:official", "--workdir", "gs://bucket/run 1",
             "--config.labels=it's.json"]

RECORDER = textwrap.dedent('''\
  #!{python}
  import json, os, sys
  with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
  ''')

GCLOUD = RECORDER + textwrap.dedent('''\
  import shutil, subprocess
  args, home = sys.argv[1:], os.environ["FAKE_WORKER_HOME"]
  if args[3] == "scp":
    shutil.copy(args[4], os.path.join(home, args[5].split(":", 1)[1]))
  elif args[3] == "ssh":  # the worker's shell; `logs` follows forever, so cut it short
    cmd = args[args.index("--command") + 1]
    subprocess.run(["timeout", "2", "bash", "-c", cmd], cwd=home, env=dict(os.environ, HOME=home))
  ''')

AUTOGAZE = RECORDER + "import time\ntime.sleep(float(os.environ.get('FAKE_SLEEP', '0')))\n"
SRUN = RECORDER + textwrap.dedent('''\
  import subprocess
  args = sys.argv[1:]
  while args and args[0].startswith("--"):  # srun's own options, then the program
    args = args[1:]
  sys.exit(subprocess.call(args))
  ''')


def _tool(folder: pathlib.Path, name: str, body: str) -> None:
  path = folder / name
  path.write_text(body.format(python=sys.executable))
  path.chmod(0o755)


@pytest.fixture
def fakes(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _tool(bin_dir, "gcloud", GCLOUD)
  for name in ("xpk", "sbatch", "pip"):
    _tool(bin_dir, name, RECORDER)
  _tool(bin_dir, "srun", SRUN)
  _tool(bin_dir, "autogaze-jax", AUTOGAZE)
  home = tmp_path / "worker"
  home.mkdir()
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(tmp_path / "calls.jsonl"),
             FAKE_WORKER_HOME=str(home))
  return env, bin_dir, home, tmp_path / "calls.jsonl"


def _calls(log: pathlib.Path, tool: str) -> list[list[str]]:
  rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
  return [r[1:] for r in rows if r[0] == tool]


def _script(name, *args, env):
  return subprocess.run(["bash", f"launch/{name}", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=120)


def test_tpu_vm_copies_the_code_runs_on_every_worker_and_stops(fakes):
  env, bin_dir, home, log = fakes
  env.update(TPU_NAME="ag-test", ZONE="us-west4-a", PROJECT="proj")
  r = _script("tpu_vm.sh", "copy", env=env)
  assert r.returncode == 0, r.stderr
  tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
  assert all((home / "autogaze_jax" / f).exists() for f in tracked), "the worker did not get every tracked file"
  venv_bin = home / "autogaze_jax" / ".venv" / "bin"  # what `install` would have made
  venv_bin.mkdir(parents=True)
  _tool(venv_bin, "autogaze-jax", AUTOGAZE)
  r = _script("tpu_vm.sh", "run", *USER_ARGS, env=dict(env, FAKE_SLEEP="60"))
  assert r.returncode == 0, r.stderr
  assert _calls(log, "autogaze-jax") == [USER_ARGS + ["--multihost"]]
  ssh = [c for c in _calls(log, "gcloud") if c[3] == "ssh"]
  assert all("--worker=all" in c for c in ssh[:-1]) and "--worker=0" in ssh[-1]  # run on all, then follow 0
  assert all(c[c.index("--project") + 1] == "proj" for c in ssh)
  pid = int((home / "autogaze_run.pid").read_text())
  os.kill(pid, 0)  # the run is detached from the ssh session
  assert _script("tpu_vm.sh", "stop", env=env).returncode == 0
  with pytest.raises(ProcessLookupError):
    for _ in range(50):
      os.kill(pid, 0)
      subprocess.run(["sleep", "0.1"])
  assert _script("tpu_vm.sh", "frobnicate", env=env).returncode == 2


def test_xpk_workload_installs_and_runs_the_same_command_on_every_slice(fakes):
  env, bin_dir, _, log = fakes
  env.update(CLUSTER="c", ZONE="z", PROJECT="p", TPU_TYPE="v5litepod-256", NUM_SLICES="2")
  r = _script("xpk.sh", "run", "ntp-1", *USER_ARGS, env=env)
  assert r.returncode == 0, r.stderr
  (create,) = _calls(log, "xpk")
  assert create[:2] == ["workload", "create"]
  assert create[create.index("--num-slices") + 1] == "2" and create[create.index("--tpu-type") + 1] == "v5litepod-256"
  command = create[create.index("--command") + 1]
  subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, check=True)  # what each container runs
  assert _calls(log, "autogaze-jax") == [USER_ARGS + ["--multihost"]]
  assert any("requirements.txt" in c for c in _calls(log, "pip"))


def test_slurm_submits_one_task_per_node_running_the_command(fakes, tmp_path):
  env, bin_dir, _, log = fakes
  venv = tmp_path / "venv"  # an absolute VENV, as on a shared filesystem
  (venv / "bin").mkdir(parents=True)
  _tool(venv / "bin", "autogaze-jax", AUTOGAZE)
  r = _script("slurm_gpu.sh", "submit", *USER_ARGS, env=dict(env, NODES="4", GPUS_PER_NODE="8", VENV=str(venv)))
  assert r.returncode == 0, r.stderr
  (submit,) = _calls(log, "sbatch")
  assert submit[submit.index("--nodes") + 1] == "4" and submit[submit.index("--ntasks-per-node") + 1] == "1"
  subprocess.run(["bash", "-c", submit[submit.index("--wrap") + 1]], cwd=ROOT, env=env, check=True)
  assert _calls(log, "autogaze-jax") == [USER_ARGS + ["--multihost"]]
  r = _script("slurm_gpu.sh", "submit", "train", env=dict(env, VENV=str(tmp_path / "none")))
  assert r.returncode == 2 and "slurm_gpu.sh setup" in r.stderr

