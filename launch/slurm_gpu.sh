#!/usr/bin/env bash
# Multi-node GPU training with SLURM: one process per node driving all of its GPUs; JAX reads
# the coordinator, process count and index from SLURM's environment (--multihost).
#
#   bash launch/slurm_gpu.sh setup                # once, on a login node: venv + jax[cuda13]
#   NODES=4 GPUS_PER_NODE=8 bash launch/slurm_gpu.sh submit train --config configs/ntp.py:official \
#       --workdir /shared/runs/ntp --config.labels=/shared/gazing_labels.json "--config.mesh.shape=(-1,8)"
#   tail -f runs/slurm/autogaze-<JOBID>.log
#
# Environment: NODES (default 1), GPUS_PER_NODE (default 8), PARTITION, ACCOUNT, TIME
# (default 24:00:00) optional; VENV (default .venv) must be on a filesystem all nodes see,
# and the workdir must be a shared filesystem or a gs:// URL. CUDA=cuda12 for older drivers.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

setup() {
  bash launch/local.sh setup
  "$VENV/bin/python" -m pip install -q "jax[${CUDA:-cuda13}]==0.12.0.1"
}

submit() {
  [ $# -gt 0 ] || { echo "usage: slurm_gpu.sh submit COMMAND [ARGS...]" >&2; exit 2; }
  [ -x "$VENV/bin/autogaze-jax" ] || { echo "no $VENV; run 'bash launch/slurm_gpu.sh setup' first" >&2; exit 2; }
  local opts=(--job-name autogaze --nodes "${NODES:-1}" --ntasks-per-node 1 --gpus-per-node "${GPUS_PER_NODE:-8}"
              --time "${TIME:-24:00:00}" --output "runs/slurm/autogaze-%j.log")
  [ -n "${PARTITION:-}" ] && opts+=(--partition "$PARTITION")
  [ -n "${ACCOUNT:-}" ] && opts+=(--account "$ACCOUNT")
  mkdir -p runs/slurm
  local args exe
  args=$(printf '%q ' "$@")
  exe=$(cd "$VENV/bin" && pwd)/autogaze-jax  # absolute, whether VENV is relative or not
  sbatch "${opts[@]}" --wrap "srun --kill-on-bad-exit=1 $(printf '%q' "$exe") $args--multihost"
}

cmd=${1:?usage: slurm_gpu.sh setup|submit [COMMAND ARGS...]}
shift
case "$cmd" in
  setup) setup ;;
  submit) submit "$@" ;;
  *) echo "unknown command $cmd (setup|submit)" >&2; exit 2 ;;
esac
