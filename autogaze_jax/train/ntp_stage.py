"""Stage 1 trainer: NTP on labelled clips with the shared loop (checkpoints, resume, metrics,
held-out evaluation), ending with the gaze model written to <workdir>/gaze_final.

The data are a `LabelledClips` source: label entries keyed like dataset videos plus a
function that loads the uint8 clip of a key. The default reads `cfg.labels` and renders the
synthetic clips those keys name. Batches are a pure function of (seed, step): epoch e visits
the keys in a permutation seeded by (seed, e), so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import numpy as np
from flax import nnx

from autogaze_jax import checkpointing, labels, metrics, plots
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import frozen_recon, loop, ntp, ratio_at_eps, synthetic_clips
from autogaze_jax.train import state as state_lib


@dataclasses.dataclass
class LabelledClips:
  entries: dict  # key -> official label entry
  load_clip: Callable[[str], np.ndarray]  # key -> uint8 (T, H, W, 3)

  def __post_init__(self):
    if not self.entries:
      raise ValueError("ntp: the labels are empty")
    self.keys = sorted(self.entries)


def synthetic_source(cfg) -> LabelledClips:
  """`cfg.labels` over the synthetic clips its keys name (see synthetic_clips)."""
  if not cfg.labels:
    raise ValueError("ntp: no labels; pass --config.labels=FILE (write one with `autogaze-jax label`)")
  entries = labels.read(cfg.labels)
  return LabelledClips(entries, lambda k: synthetic_clips.clip(k, cfg.clip_len, cfg.image_size))


def batch_keys(keys: list, seed: int, step: int, batch: int) -> list:
  """Keys of global batch `step`: consecutive slices of per-epoch permutations."""
  n = len(keys)
  out = []
  for i in range(step * batch, (step + 1) * batch):
    epoch, pos = divmod(i, n)
    out.append(keys[np.random.default_rng((seed, epoch)).permutation(n)[pos]])
  return out


def _accum_steps(cfg) -> int:
  if not cfg.micro_batch_size or cfg.micro_batch_size >= cfg.batch_size:
    return 1
  if cfg.batch_size % cfg.micro_batch_size:
    raise ValueError(f"ntp: batch_size={cfg.batch_size} is not a multiple of micro_batch_size={cfg.micro_batch_size}")
  return cfg.batch_size // cfg.micro_batch_size


def train(cfg, workdir: str, source: LabelledClips | None = None, recon=None, progress: bool = True) -> dict:
  """Runs NTP; writes metrics.jsonl, curve.png, report.json, ckpt/ and gaze_final/."""
  source = source or synthetic_source(cfg)
  vocab, k = cfg.gaze.num_vision_tokens_each_frame, cfg.gaze.decoder.num_multi_token_pred
  for key in source.keys:
    labels.validate_entry(key, source.entries[key], cfg.clip_len, vocab)
  slots = labels.slot_cap(source.entries, k)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json(indent=2))
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  tx = ntp.make_optimizer(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: GazeModel(cfg.gaze, nnx.Rngs(cfg.seed)), tx, mesh)
  jitted, batch_sh = ntp.jit_step(graphdef, shardings, mesh, accum_steps=_accum_steps(cfg),
                                  tlp_weight=cfg.loss.tlp_weight, optimize_tlp=cfg.loss.optimize_task_loss_prediction)
  counter = {"step": 0}

  def step(st, batch, key):
    st, m = jitted(st, batch, key)
    counter["step"] += 1
    if cfg.nan_guard:
      ntp.check_finite(m, counter["step"])
    return st, m

  per_host = cfg.batch_size // jax.process_count()

  def host_batch(i):
    keys = batch_keys(source.keys, cfg.seed, i, cfg.batch_size)
    keys = keys[jax.process_index() * per_host : (jax.process_index() + 1) * per_host]
    clips = np.stack([source.load_clip(key) for key in keys])
    return ntp.host_arrays(clips, labels.collate([source.entries[key] for key in keys], vocab, slots, keys))

  def put_batch(x):
    return {name: jax.make_array_from_process_local_data(batch_sh[name], v) for name, v in x.items()}

  if recon is None:
    recon = frozen_recon.load(cfg.recon, mesh, workdir=cfg.recon_workdir, weights=cfg.recon_weights)
  held = np.stack([c for _, c in synthetic_clips.source(cfg.seed * 1_000_003 + 7919 * 1_000_003, cfg.eval.num_clips,
                                                          cfg.clip_len, cfg.image_size, "val")])
  evaluate = ratio_at_eps.make_evaluator(graphdef, recon, mesh, held, eps=cfg.eval.eps, ratios=cfg.eval.ratios,
                                         frames=cfg.eval.frames)
  t0 = time.perf_counter()
  stage = loop.Stage(step_fn=step, host_batch=host_batch, put_batch=put_batch, evaluate=evaluate,
                     clips_per_step=cfg.batch_size)
  with mesh_lib.use(mesh):
    state = loop.run(stage, state, workdir=workdir, steps=cfg.steps, seed=cfg.seed, log_every=cfg.log_every,
                     eval_every=cfg.eval.every, checkpoint_every=cfg.checkpoint_every, progress=progress)
  wall = time.perf_counter() - t0
  final = os.path.join(workdir, "gaze_final")
  if not checkpointing.is_checkpoint(final):
    checkpointing.save(final, nnx.state(nnx.merge(graphdef, state).model, nnx.Param), cfg.gaze)
  return _report(workdir, cfg, wall, slots)


def _report(workdir: str, cfg, wall: float, slots: int) -> dict:
  rows = metrics.read(os.path.join(workdir, "metrics.jsonl"))
  plots.curves(os.path.join(workdir, "curve.png"), rows, ["ntp_loss", "task_loss_prediction_loss"], "NTP training loss")
  evals = [r for r in rows if "eval_ratio_at_eps" in r]
  train_rows = [r for r in rows if "ntp_loss" in r]
  pick = lambda r: {k: v for k, v in r.items() if k.startswith("eval_")}
  report = {
    "steps": cfg.steps, "wall_s": round(wall, 1), "slots_per_frame": slots, "eval_eps": cfg.eval.eps,
    "ntp_loss_first_logged": train_rows[0]["ntp_loss"] if train_rows else None,
    "ntp_loss_last_logged": train_rows[-1]["ntp_loss"] if train_rows else None,
    "eval_untrained": pick(evals[0]) if evals else None,
    "eval_final": pick(evals[-1]) if evals else None,
  }
  with open(os.path.join(workdir, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  return report
