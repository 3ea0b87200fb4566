"""Stage 1 trainer: NTP on labelled clips with the shared loop (checkpoints, resume, metrics,
held-out evaluation), ending with the gaze model written to <workdir>/gaze_final.

The data are the Grain pipeline's (`config.data`) restricted to the clips that have labels
in `config.labels` (joined on the last three path components of the source's keys, which
`autogaze-jax label` writes); each batch carries its clips' labels. The iterator position is
checkpointed, so a resumed run sees exactly the batches it would have seen. Held-out clips
are the validation split's (`pipeline.eval_clips`), the ones GRPO evaluates on.
"""

from __future__ import annotations

import functools
import os
import time

import jax
from flax import nnx

from autogaze_jax import distributed, pictures, storage
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import labels, pipeline
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import evals, loop, metric_log, optim, oracle
from autogaze_jax.train import state as state_lib
from autogaze_jax.train.ntp import dagger
from autogaze_jax.train.ntp import step as ntp_step

ROUND_TIMES = "step_times_before_round.json"  # the loop's step times up to the DAgger round


def labelled_batches(cfg, source, vocab: int, k: int, dagger_labels: dict | None = None):
  """(Grain iterator of labelled batches, static gaze slots per frame, the labels, the labelled
  source indices) over the clips of `source` that have labels in `cfg.labels`; every used label
  is checked against clip_len. dagger_labels (may be empty): batches also carry the ids read as
  history, each clip's from these with probability cfg.dagger.share (`dagger.py`)."""
  if not cfg.labels:
    raise ValueError("ntp: no labels; pass --config.labels=FILE (write one with `autogaze-jax label`)")
  data = pipeline.for_training(cfg)
  table, indices, slots = pipeline.labelled(data, source, vocab, k)
  for i in indices:
    key = labels.key_of(source.key(int(i)))
    labels.validate_entry(key, table[key], cfg.clip_len, vocab)
    if "history_pos" in table[key]:
      raise ValueError(f"ntp: labels[{key!r}] carries history_pos (a DAgger round's labels, which the stage "
                       "makes itself); give the greedy labels as config.labels")
  for key, entry in (dagger_labels or {}).items():
    if key not in table or [len(f) for f in entry["gazing_pos"]] != [len(f) for f in table[key]["gazing_pos"]]:
      raise ValueError(f"ntp: the DAgger label of {key!r} does not match config.labels (another run's "
                       f"{dagger.FILE}?); delete it to make the round's labels again")
    labels.validate_entry(key, entry, cfg.clip_len, vocab)
  soft = ntp_step.soft_temperature(cfg) > 0
  if soft:
    missing = next((labels.key_of(source.key(int(i))) for i in indices
                    if "candidate_losses" not in table[labels.key_of(source.key(int(i)))]), None)
    if missing is not None:
      raise ValueError(f"ntp: loss.soft_targets needs labels with candidate_losses, and {missing!r} has none "
                       "(label with --config.label.candidate_losses=True)")
  ds = pipeline.make_dataset(data, source, batch_size=cfg.batch_size, seed=cfg.seed, indices=indices,
                             labels=table, label_vocab=vocab, label_slots=slots, label_scales=cfg.gaze.scales,
                             label_candidates=soft, dagger_labels=dagger_labels,
                             dagger_share=float(cfg.dagger.share) if dagger_labels else 0.0)
  return iter(ds), slots, table, indices


def step_batch(element: dict) -> dict:
  """A pipeline element -> the NTP step's batch (video, ids, lens, task_losses, and
  candidate_losses when the labels' soft targets are trained on, history_ids with a DAgger round)."""
  out = {"video": element["video"], "ids": element["label_ids"], "lens": element["label_lens"],
         "task_losses": element["label_task_losses"]}
  if "label_candidate_losses" in element:
    out["candidate_losses"] = element["label_candidate_losses"]
  if "label_history_ids" in element:
    out["history_ids"] = element["label_history_ids"]
  return out


def train(cfg, workdir: str, source=None, oracle_model=None, progress: bool = True) -> dict:
  """Runs NTP; writes metrics.jsonl, curve.png, report.json, ckpt/ and gaze_final/ (with a DAgger
  round also dagger_labels.json and step_times_before_round.json, `dagger.py`).

  source: a data source (`pipeline.make_source` protocol: len, key(i), load(i, rng)) whose
  labelled clips are trained on; default `pipeline.make_source(cfg.data, "train", cfg.seed)`.
  oracle_model: the frozen reconstructor of the held-out evaluation and of the DAgger round's
  labeller; default `oracle.load_reconstructor` of cfg.oracle (L1 only).
  """
  vocab, k = cfg.gaze.num_vision_tokens_each_frame, cfg.gaze.decoder.num_multi_token_pred
  if source is None:
    source = pipeline.make_source(pipeline.for_training(cfg), "train", cfg.seed)
  dagger_at = dagger.start_step(cfg)
  batches, slots, table, indices = labelled_batches(cfg, source, vocab, k, {} if dagger_at else None)
  mesh = loop.begin(cfg, workdir)
  tx = optim.make(cfg.optimizer, cfg.steps)
  graphdef, state, shardings = state_lib.create(lambda: GazeModel(cfg.gaze, nnx.Rngs(cfg.seed)), tx, mesh)
  step, batch_sh = ntp_step.make_step(graphdef, shardings, mesh, cfg)

  def host_batch(i):  # the iterator's position is checkpointed, so a resumed run continues it
    return step_batch(next(stage.data_iterator))

  def put_batch(x):
    return {name: jax.make_array_from_process_local_data(batch_sh[name], v) for name, v in x.items()}

  recon_given = oracle_model
  if oracle_model is None:
    oracle_model = oracle.load_reconstructor(cfg.oracle.model, mesh, workdir=cfg.oracle.workdir,
                                             weights=cfg.oracle.weights)
  held = pipeline.eval_clips(pipeline.for_training(cfg), cfg.eval.num_clips, cfg.seed)
  evaluate = evals.ratio_evaluator(graphdef, oracle_model, mesh, held, eps=cfg.eval.eps, ratios=cfg.eval.ratios,
                                   frames=cfg.eval.frames, picture_dir=os.path.join(workdir, "pictures"))
  t0 = time.perf_counter()
  stage = loop.Stage(step_fn=step, host_batch=host_batch, put_batch=put_batch, evaluate=evaluate,
                     clips_per_step=cfg.batch_size, data_iterator=batches,
                     tokens_per_step=cfg.batch_size * cfg.clip_len * vocab)
  run = functools.partial(loop.run, workdir=workdir, seed=cfg.seed, log_every=cfg.log_every,
                          eval_every=cfg.eval.every, checkpoint_every=cfg.checkpoint_every, progress=progress,
                          profile=cfg.get("profile_steps", ""))
  round_summary = None
  if dagger_at:  # train up to the round, label at the model's own states, go on with both labels
    with mesh_lib.use(mesh):
      state = run(stage, state, steps=dagger_at, final=False)
      ts = nnx.merge(graphdef, state)
      done = int(jax.device_get(ts.opt.step[...]))  # > dagger_at: resumed after the round
      params = jax.jit(lambda x: x, out_shardings=mesh_lib.replicated(mesh))(nnx.state(ts.model))
    times = os.path.join(workdir, "step_times.json")
    kept = os.path.join(workdir, ROUND_TIMES)  # the steps before the round, once (a rerun's are later ones)
    if done == dagger_at and distributed.is_main() and storage.exists(times) and not storage.exists(kept):
      storage.write_json(kept, storage.read_json(times))
    model = nnx.merge(nnx.split(ts.model)[0], params)  # replicated: every process holds all of it
    extra, round_summary = dagger.round_labels(cfg, model, source, indices, table, slots, workdir, done,
                                               recon=recon_given, progress=progress)
    # the same pipeline with the new labels; the loop restores its position from step dagger_at
    old, stage.data_iterator = stage.data_iterator, labelled_batches(cfg, source, vocab, k, extra)[0]
    if hasattr(old, "close"):
      old.close()  # its worker processes and prefetch buffers
  with mesh_lib.use(mesh):
    state = run(stage, state, steps=cfg.steps)
  wall = time.perf_counter() - t0
  loop.export_model(workdir, "gaze_final", nnx.merge(graphdef, state).model, cfg.gaze)
  return _report(workdir, cfg, wall, slots, round_summary and {"step": dagger_at, **round_summary})


def _report(workdir: str, cfg, wall: float, slots: int, dagger_round: dict | None) -> dict:
  rows = metric_log.read(os.path.join(workdir, "metrics.jsonl"))
  if distributed.is_main():
    pictures.curves(os.path.join(workdir, "curve.png"), rows, ["ntp_loss", "task_loss_prediction_loss"],
                 "NTP training loss")
  eval_rows = [r for r in rows if "eval_ratio_at_eps" in r]
  train_rows = [r for r in rows if "ntp_loss" in r]
  pick = lambda r: {k: v for k, v in r.items() if k.startswith("eval_")}
  report = {
    "steps": cfg.steps, "wall_s": round(wall, 1), "slots_per_frame": slots, "eval_eps": cfg.eval.eps,
    "ntp_loss_first_logged": train_rows[0]["ntp_loss"] if train_rows else None,
    "ntp_loss_last_logged": train_rows[-1]["ntp_loss"] if train_rows else None,
    "eval_untrained": pick(eval_rows[0]) if eval_rows else None,
    "eval_final": pick(eval_rows[-1]) if eval_rows else None,
    "dagger": dagger_round,
  }
  before = os.path.join(workdir, ROUND_TIMES)
  if storage.exists(before):  # step_times.json (loop.finish) then holds the steps after the round
    report["step_times_before_round"] = storage.read_json(before)
  return loop.finish(workdir, report)
