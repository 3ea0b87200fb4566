#!/usr/bin/env bash
# A Cloud TPU VM slice: create it, copy this repository to every worker, install, run the same
# command on every worker (the entry point's --multihost finds the other workers itself),
# stream the logs, stop, delete. Needs the gcloud CLI, logged in, with a default project or PROJECT.
#
#   export TPU_NAME=ag-pod ZONE=us-west4-a ACCELERATOR=v5litepod-256 VERSION=v2-alpha-tpuv5-lite
#   bash launch/tpu_vm.sh create                 # SPOT=1 for spot capacity
#   bash launch/tpu_vm.sh copy                   # git-tracked files -> ~/autogaze_jax on all workers
#   bash launch/tpu_vm.sh install                # Python 3.12 venv + requirements + libtpu, all workers
#   bash launch/tpu_vm.sh run train --config configs/ntp.py:official --workdir gs://BUCKET/ntp \
#       --config.labels=gs://BUCKET/gazing_labels.json --config.oracle.weights=/path/videomae.pt
#   bash launch/tpu_vm.sh logs [WORKER]          # follow a worker's log (default 0); Ctrl-C stops watching only
#   bash launch/tpu_vm.sh stop                   # end the run on all workers
#   bash launch/tpu_vm.sh delete
#   bash launch/tpu_vm.sh up ARGS...             # create + copy + install + run ARGS + logs
#
# Environment: TPU_NAME, ZONE (always); ACCELERATOR, VERSION (create); PROJECT, SPOT=1,
# REMOTE_DIR (default autogaze_jax, relative to the worker's home) optional.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TPU_NAME:?set TPU_NAME (the name of the slice)}" "${ZONE:?set ZONE (e.g. us-west4-a)}"
REMOTE_DIR=${REMOTE_DIR:-autogaze_jax}
LOG=autogaze_run.log
PID=autogaze_run.pid
GC=(gcloud compute tpus tpu-vm)
WHERE=(--zone "$ZONE")
[ -n "${PROJECT:-}" ] && WHERE+=(--project "$PROJECT")

on_workers() {  # on_workers WORKER COMMAND: run a shell command on one worker or on all
  "${GC[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --worker="$1" --command "$2"
}

create() {
  : "${ACCELERATOR:?set ACCELERATOR (e.g. v5litepod-256, v5p-128, v6e-256)}"
  : "${VERSION:?set VERSION (the TPU runtime, e.g. v2-alpha-tpuv5-lite, v2-alpha-tpuv6e)}"
  local extra=()
  [ "${SPOT:-0}" = 1 ] && extra+=(--spot)
  "${GC[@]}" create "$TPU_NAME" "${WHERE[@]}" --accelerator-type "$ACCELERATOR" --version "$VERSION" "${extra[@]}"
}

copy() {
  local tgz
  tgz=$(mktemp -d)/autogaze_jax.tgz
  git ls-files -z | tar czf "$tgz" --null -T -
  "${GC[@]}" scp "$tgz" "$TPU_NAME:autogaze_jax.tgz" "${WHERE[@]}" --worker=all
  on_workers all "mkdir -p $REMOTE_DIR && tar xzf autogaze_jax.tgz -C $REMOTE_DIR && rm autogaze_jax.tgz"
}

install() {
  # TPU VM images ship an older Python; uv provides 3.12 when the image has none.
  on_workers all "export PATH=\$HOME/.local/bin:\$PATH; command -v python3.12 >/dev/null || \
    { curl -LsSf https://astral.sh/uv/install.sh | sh && uv python install 3.12; }; \
    cd $REMOTE_DIR && TPU=1 bash launch/local.sh setup"
}

run() {
  [ $# -gt 0 ] || { echo "usage: tpu_vm.sh run COMMAND [ARGS...] (e.g. train --config ...)" >&2; exit 2; }
  local args
  args=$(printf '%q ' "$@")
  # Detached, so that a dropped connection does not end the run; every worker logs to ~/$LOG.
  on_workers all "cd $REMOTE_DIR && { nohup .venv/bin/autogaze-jax $args--multihost > ~/$LOG 2>&1 < /dev/null & \
    echo \$! > ~/$PID; }"
  echo "started on all workers of $TPU_NAME; following worker 0 (bash launch/tpu_vm.sh logs N for another)" >&2
}

logs() {
  on_workers "${1:-0}" "tail -n +1 -F ~/$LOG"
}

cmd=${1:?usage: tpu_vm.sh create|copy|install|run|logs|stop|delete|up [ARGS...]}
shift
case "$cmd" in
  create) create ;;
  copy) copy ;;
  install) install ;;
  run) run "$@"; logs 0 ;;
  logs) logs "$@" ;;
  stop) on_workers all "[ -f ~/$PID ] && kill -TERM \$(cat ~/$PID) 2>/dev/null; rm -f ~/$PID" ;;
  delete) "${GC[@]}" delete "$TPU_NAME" "${WHERE[@]}" --quiet ;;
  up) create; copy; install; run "$@"; logs 0 ;;
  *) echo "unknown command $cmd (create|copy|install|run|logs|stop|delete|up)" >&2; exit 2 ;;
esac
