"""Stage 1 trainer: NTP on labelled clips with the shared loop (checkpoints, resume, metrics,
held-out evaluation), ending with the gaze model written to <workdir>/gaze_final.

The data are the Grain pipeline's (`config.data`) restricted to the clips that have labels
in `config.labels` (joined on the last three path components of the source's keys, which
`autogaze-jax label` writes); each batch carries its clips' labels. The iterator position is
checkpointed, so a resumed run sees exactly the batches it would have seen. Held-out clips
are the validation split's (`pipeline.eval_clips`), the ones GRPO evaluates on.
"""

from __future__ import annotations

import os
import time

import jax
from flax import nnx

from autogaze_jax import checkpointing, distributed, labels, metrics, plots, storage
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import pipeline
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import frozen_recon, loop, ntp, ratio_at_eps
from autogaze_jax.train import state as state_lib


def labelled_batches(cfg, source, vocab: int, k: int):
  """(Grain iterator of labelled batches, static gaze slots per frame) over the clips of
  `source` that have labels in `cfg.labels`; every used label is checked against clip_len."""
  if not cfg.labels:
    raise ValueError("ntp: no labels; pass --config.labels=FILE (write one with `autogaze-jax label`)")
  data = pipeline.for_training(cfg)
  table, indices, slots = pipeline.labelled(data, source, vocab, k)
  for i in indices:
    key = labels.key_of(source.key(int(i)))
    labels.validate_entry(key, table[key], cfg.clip_len, vocab)
  ds = pipeline.make_dataset(data, source, batch_size=cfg.batch_size, seed=cfg.seed, indices=indices,
                             labels=table, label_vocab=vocab, label_slots=slots)
  return iter(ds), slots


def step_batch(element: dict) -> dict:
  """A pipeline element -> the NTP step's batch (video, ids, lens, task_losses)."""
  return {"video": element["video"], "ids": element["label_ids"], "lens": element["label_lens"],
          "task_losses": element["label_task_losses"]}


def _accum_steps(cfg) -> int:
  if not cfg.micro_batch_size or cfg.micro_batch_size >= cfg.batch_size:
    return 1
  if cfg.batch_size % cfg.micro_batch_size:
    raise ValueError(f"ntp: batch_size={cfg.batch_size} is not a multiple of micro_batch_size={cfg.micro_batch_size}")
  return cfg.batch_size // cfg.micro_batch_size


def train(cfg, workdir: str, source=None, recon=None, progress: bool = True) -> dict:
  """Runs NTP; writes metrics.jsonl, curve.png, report.json, ckpt/ and gaze_final/.

  source: a data source (`pipeline.make_source` protocol: len, key(i), load(i, rng)) whose
  labelled clips are trained on; default `pipeline.make_source(cfg.data, "train", cfg.seed)`.
  recon: the frozen reconstructor for evaluation; default loaded from cfg.recon_workdir or
  cfg.recon_weights.
  """
  vocab, k = cfg.gaze.num_vision_tokens_each_frame, cfg.gaze.decoder.num_multi_token_pred
  if source is None:
    source = pipeline.make_source(pipeline.for_training(cfg), "train", cfg.seed)
  batches, slots = labelled_batches(cfg, source, vocab, k)
  storage.makedirs(workdir)
  if distributed.is_main():
    storage.write_text(os.path.join(workdir, "config.json"), cfg.to_json(indent=2))
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

  def host_batch(i):  # the iterator's position is checkpointed, so a resumed run continues it
    return step_batch(next(batches))

  def put_batch(x):
    return {name: jax.make_array_from_process_local_data(batch_sh[name], v) for name, v in x.items()}

  if recon is None:
    recon = frozen_recon.load(cfg.recon, mesh, workdir=cfg.recon_workdir, weights=cfg.recon_weights)
  held = pipeline.eval_clips(pipeline.for_training(cfg), cfg.eval.num_clips, cfg.seed)
  evaluate = ratio_at_eps.make_evaluator(graphdef, recon, mesh, held, eps=cfg.eval.eps, ratios=cfg.eval.ratios,
                                         frames=cfg.eval.frames, picture_dir=os.path.join(workdir, "pictures"))
  t0 = time.perf_counter()
  stage = loop.Stage(step_fn=step, host_batch=host_batch, put_batch=put_batch, evaluate=evaluate,
                     clips_per_step=cfg.batch_size, data_iterator=batches)
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
  if distributed.is_main():
    plots.curves(os.path.join(workdir, "curve.png"), rows, ["ntp_loss", "task_loss_prediction_loss"],
                 "NTP training loss")
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
  if distributed.is_main():
    storage.write_json(os.path.join(workdir, "report.json"), report)
  return report
