"""Metric logging: JSONL rows (and TensorBoard scalars when tensorboardX is installed),
written by process 0 only, to a local workdir or a gs:// one.

For an object-store workdir, tensorboardX writes its event file into a local temporary folder
and the file is copied to `<workdir>/tb/` after every flush (an object cannot be appended to;
TensorBoard reads gs:// logdirs directly)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid

import jax
import numpy as np

from autogaze_jax import storage


class Writer:
  def __init__(self, workdir: str, name: str = "metrics"):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, f"{name}.jsonl")
    self._tb = None
    self._tb_mirror = None  # (local folder, remote folder) for object-store workdirs
    if self.enabled:
      storage.makedirs(workdir)
      try:
        from tensorboardX import SummaryWriter
      except ImportError:
        return
      tb_dir = os.path.join(workdir, "tb")
      if storage.is_url(workdir):
        self._tb_mirror = (tempfile.mkdtemp(prefix="autogaze_tb_"), tb_dir)
        tb_dir = self._tb_mirror[0]
      # a unique suffix: two writers in the same second (a quick resume) never share a file
      self._tb = SummaryWriter(tb_dir, filename_suffix=f".{uuid.uuid4().hex[:8]}")

  def write(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "time": round(time.time(), 3)}
    for k, v in scalars.items():
      row[k] = float(np.asarray(v))
    storage.append_text(self.path, json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k not in ("step", "time"):
          self._tb.add_scalar(k, v, step)
      self._tb.flush()
      self._mirror()

  def _mirror(self) -> None:
    if self._tb_mirror is None:
      return
    local, remote = self._tb_mirror
    for name in os.listdir(local):
      with open(os.path.join(local, name), "rb") as f:
        storage.path(os.path.join(remote, name)).write_bytes(f.read())

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._mirror()
      if self._tb_mirror is not None:
        shutil.rmtree(self._tb_mirror[0], ignore_errors=True)
      self._tb = None


def read(path: str) -> list[dict]:
  if not storage.exists(path):
    return []
  return [json.loads(line) for line in storage.path(path).read_text().splitlines() if line.strip()]
