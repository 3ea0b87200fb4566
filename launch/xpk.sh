#!/usr/bin/env bash
# One or more TPU slices on a GKE cluster through xpk (github.com/AI-Hypercomputer/xpk):
# xpk builds an image from BASE_IMAGE plus this repository, and every host of every slice
# installs the pinned requirements and runs the same command with --multihost (JAX reads
# the coordinator and the slice layout from the environment xpk sets).
#
#   export CLUSTER=my-cluster ZONE=us-west4-a PROJECT=my-project TPU_TYPE=v5litepod-256 NUM_SLICES=2
#   bash launch/xpk.sh run ntp-1 train --config configs/ntp.py:official --workdir gs://BUCKET/ntp \
#       --config.labels=gs://BUCKET/gazing_labels.json
#   bash launch/xpk.sh status ntp-1 | logs ntp-1 | delete ntp-1
#
# Environment: CLUSTER, ZONE, PROJECT, TPU_TYPE (run), NUM_SLICES (default 1), BASE_IMAGE
# (default python:3.12-slim), PRIORITY (optional: low|medium|high). The cluster must exist
# (`xpk cluster create --cluster ... --tpu-type ... --num-slices ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CLUSTER:?set CLUSTER}" "${ZONE:?set ZONE}" "${PROJECT:?set PROJECT}"
WHERE=(--cluster "$CLUSTER" --zone "$ZONE" --project "$PROJECT")

run() {
  local name=${1:?usage: xpk.sh run WORKLOAD_NAME COMMAND [ARGS...]}
  shift
  [ $# -gt 0 ] || { echo "usage: xpk.sh run WORKLOAD_NAME COMMAND [ARGS...]" >&2; exit 2; }
  : "${TPU_TYPE:?set TPU_TYPE (e.g. v5litepod-256, v5p-128, v6e-256)}"
  local args extra=()
  args=$(printf '%q ' "$@")
  [ -n "${PRIORITY:-}" ] && extra+=(--priority "$PRIORITY")
  # xpk copies --script-dir into the image's working directory.
  xpk workload create "${WHERE[@]}" --workload "$name" --tpu-type "$TPU_TYPE" \
    --num-slices "${NUM_SLICES:-1}" --base-docker-image "${BASE_IMAGE:-python:3.12-slim}" --script-dir . \
    "${extra[@]}" --command "pip install -q -r requirements.txt 'libtpu==0.0.50.*' && \
pip install -q --no-deps -e . && autogaze-jax $args--multihost"
}

cmd=${1:?usage: xpk.sh run|status|logs|delete WORKLOAD_NAME [ARGS...]}
shift
case "$cmd" in
  run) run "$@" ;;
  status) xpk workload list "${WHERE[@]}" --filter-by-job "${1:?workload name}" ;;
  logs) kubectl logs -f --max-log-requests 64 -l "jobset.sigs.k8s.io/jobset-name=${1:?workload name}" --prefix ;;
  delete) xpk workload delete "${WHERE[@]}" --workload "${1:?workload name}" ;;
  *) echo "unknown command $cmd (run|status|logs|delete)" >&2; exit 2 ;;
esac
