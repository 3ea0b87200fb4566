"""NTP's DAgger round: the labeller at given states (`GreedySearch.follow`), the model's rollouts,
labels that carry their history (format, pipeline, symmetries), and the round inside the NTP
stage (its labels, exact resume across it)."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.cli import config_files
from autogaze_jax.data import labels, loading, pipeline, symmetries, synthetic
from autogaze_jax.models import decoding, gaze_config, recon_config
from autogaze_jax.models.gaze import GazeModel
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import labelling
from autogaze_jax.train.ntp import dagger
from autogaze_jax.train.ntp import trainer as ntp_trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
T, BUDGETS, V = 2, (3, 2), 20


@pytest.fixture(scope="module")
def setup():
  cfg = recon_config.recon_config("tiny")
  cfg.scales = (32, 64)
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  with mesh_lib.use(mesh):
    recon = Reconstructor(cfg, nnx.Rngs(0))
  clips = np.stack([synthetic.make_clip(T, 64, seed=s, style="cells") for s in (5, 6, 7)])
  search = labelling.GreedySearch(recon, BUDGETS, eps=-1.0, chunk=8)
  return mesh, recon, clips, search


def random_states(rng, lens):
  states = np.full((*lens.shape, max(BUDGETS)), V, np.int32)
  for i, t in np.ndindex(lens.shape):
    states[i, t, : lens[i, t]] = rng.choice(V, lens[i, t], replace=False)
  return states


def test_following_the_labellers_own_path_gives_its_labels_back(setup):
  mesh, _, clips, search = setup
  with mesh_lib.use(mesh):
    got = labels.collate(search(clips), V, max(BUDGETS))
    picks, losses = search.follow(clips, got["ids"], got["lens"])
  np.testing.assert_array_equal(picks, got["ids"])
  real = got["ids"] != V
  np.testing.assert_allclose(losses[real], got["task_losses"][real], rtol=1e-6)


def test_on_another_path_each_pick_is_the_best_id_left(setup):
  mesh, recon, clips, search = setup
  lens = np.broadcast_to(np.asarray(BUDGETS), (3, T)).copy()
  lens[2] = 1  # a clip with a smaller budget in the same batch: nothing past it is labelled
  states = random_states(np.random.default_rng(0), lens)
  with mesh_lib.use(mesh):
    picks, losses = search.follow(clips, states, lens)
    video = image_lib.normalize_on_device(jnp.asarray(clips))
    every = jnp.broadcast_to(jnp.arange(V, dtype=jnp.int32), (3, V))
    for t in range(T):
      for s in range(BUDGETS[t]):
        ids = states.copy()
        ids[:, t] = np.where(np.arange(max(BUDGETS)) < s, states[:, t], V)  # the path up to slot s of frame t
        ids[:, t + 1:] = V  # later frames do not reach frame t's loss
        all_losses = np.array(labelling.candidate_losses(recon, video, jnp.asarray(ids), t, s, every, 8))
        for i in range(3):  # already gazed in this frame
          all_losses[i, states[i, t, :min(s, lens[i, t])]] = np.inf
        live = s < lens[:, t]
        np.testing.assert_array_equal(picks[live, t, s], all_losses[live].argmin(1))
        own = all_losses[np.flatnonzero(live), states[live, t, s]]
        np.testing.assert_allclose(losses[live, t, s], own, rtol=1e-5)
        assert (picks[~live, t, s] == V).all()
  assert not np.array_equal(picks, states)  # a random path is not the expert's


def test_a_candidate_subset_still_gives_the_states_own_loss(setup):
  mesh, recon, clips, full = setup
  lens = np.broadcast_to(np.asarray(BUDGETS), (3, T)).copy()
  states = random_states(np.random.default_rng(1), lens)
  with mesh_lib.use(mesh):
    subset = labelling.GreedySearch(recon, BUDGETS, eps=-1.0, num_candidates=3, chunk=3, seed=2)
    picks, losses = subset.follow(clips, states, lens)
    _, want = full.follow(clips, states, lens)  # every id scored: the own id's loss is exact
  np.testing.assert_allclose(losses, want, rtol=1e-5)
  for i, t, s_ in zip(*np.nonzero(states != V)):  # a pick is never a state's earlier id of its frame
    assert picks[i, t, s_] != V and picks[i, t, s_] not in states[i, t, :s_]
  with pytest.raises(ValueError, match="follow needs states"):
    full.follow(clips, states, np.zeros_like(lens))


def test_rollouts_gaze_each_clip_at_its_own_budgets():
  cfg = gaze_config.tiny_config()
  cfg.decoder.num_multi_token_pred = 1
  rng = np.random.default_rng(3)
  clips = rng.integers(0, 256, (6, T, 64, 64, 3), dtype=np.uint8)
  lens = np.array([[3, 2], [1, 1], [3, 2], [2, 3], [1, 1], [3, 2]], np.int32)  # a group of 3 in batches of 2
  with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
    model = GazeModel(cfg, nnx.Rngs(0))
    got = dagger.Rollouts(model, 3, batch=2)(clips, lens)
    for i in range(6):  # one clip at a time, sized for its own budgets
      spec = decoding.DecodeSpec(slots=int(lens[i].max()))
      video = image_lib.normalize_on_device(jnp.asarray(clips[i:i + 1]))
      want, _ = decoding.generate(model, video, jnp.asarray(lens[i]), jnp.zeros((1, T)), None, 1.0, spec)
      for t in range(T):
        np.testing.assert_array_equal(got[i, t, : lens[i, t]], np.asarray(want)[0, t, : lens[i, t]])
        assert (got[i, t, lens[i, t]:] == V).all()


def test_labels_with_history_validate_round_trip_and_load(tmp_path):
  # frame 0: the model gazed 3 then 7; the labeller would have added 5, then 5 again (still not gazed)
  entry = {"gazing_pos": [[5, 5], [26]], "history_pos": [[3, 7], [21]], "task_losses": [[0.9, 0.8], [0.7]]}
  labels.validate_entry("c", entry, T, V)
  path = tmp_path / "l.json"
  labels.write(str(path), {"a/b/c.mp4": entry})
  back = labels.read(str(path))["a/b/c.mp4"]
  assert back == entry
  np.testing.assert_array_equal(labels.history_array(back, V, 3), [[3, 7, V], [1, V, V]])
  plain = {k: v for k, v in entry.items() if k != "history_pos"}
  with pytest.raises(ValueError, match="repeats a gaze"):
    labels.validate_entry("c", plain, T, V)  # without history a repeat is an error
  bad = {**entry, "gazing_pos": [[5, 3], [26]]}
  with pytest.raises(ValueError, match="already in its history"):
    labels.validate_entry("c", bad, T, V)
  with pytest.raises(ValueError, match="history_pos repeats"):
    labels.validate_entry("c", {**entry, "history_pos": [[3, 3], [21]]}, T, V)
  with pytest.raises(ValueError, match="history_pos must be global ids"):
    labels.validate_entry("c", {**entry, "history_pos": [[3, 27], [21]]}, T, V)


PLAIN = {"gazing_pos": [[0, 5], [21]], "task_losses": [[1.0, 0.5], [0.7]]}
OWN = {"gazing_pos": [[5, 5], [26]], "history_pos": [[3, 7], [21]], "task_losses": [[0.9, 0.8], [0.6]]}


def one_clip_loader(share: float, **kwargs):
  """(tiny config, its source, a LoadClip of the source's first clip with the labels PLAIN and
  the DAgger labels OWN drawn with probability `share`)."""
  cfg = config_files.load(f"{ROOT}/configs/ntp.py:tiny")
  cfg.clip_len, cfg.data.synthetic_count = T, 3
  source = pipeline.make_source(pipeline.for_training(cfg), "train", 0)
  key = labels.key_of(source.key(0))
  load = loading.LoadClip(source, [0], 64, clip_len=T, labels={key: PLAIN}, label_vocab=V, label_slots=2,
                          dagger_labels={key: OWN}, dagger_share=share, **kwargs)
  return cfg, source, load


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_pipeline_feeds_the_history_of_the_labels_it_drew(share):
  scales = config_files.load(f"{ROOT}/configs/ntp.py:tiny").gaze.scales
  cfg, source, load = one_clip_loader(share, label_scales=scales, label_symmetries=("flips", "colours"))
  plain, own = PLAIN, OWN
  for seed in range(6):
    out = load.random_map(0, np.random.default_rng(seed))
    drawn = own if share == 1.0 else plain
    ids, lens, losses = labels.to_arrays(drawn, V, 2)
    np.testing.assert_allclose(out["label_task_losses"], losses)
    # history and targets moved by the same flip/turn: undo it with the targets' permutation
    perms = [symmetries.id_permutation(cfg.gaze.scales, V, o) for o in range(8)]
    ops = [o for o, p in enumerate(perms) if (p[ids] == out["label_ids"]).all()]
    assert ops and any((perms[o][labels.history_array(drawn, V, 2)] == out["label_history_ids"]).all() for o in ops)
  with pytest.raises(ValueError, match="share of DAgger labels"):
    loading.LoadClip(source, [0], 64, dagger_share=1.5)


def test_half_of_the_draws_take_the_dagger_labels():
  _, _, load = one_clip_loader(0.5)
  drawn = [load.random_map(0, np.random.default_rng(seed))["label_task_losses"][0, 0] for seed in range(200)]
  share = np.mean(np.isclose(drawn, 0.9))
  assert (np.isclose(drawn, 0.9) | np.isclose(drawn, 1.0)).all() and 0.4 < share < 0.6
  again = [load.random_map(0, np.random.default_rng(seed))["label_task_losses"][0, 0] for seed in range(200)]
  assert drawn == again  # the element's seeded rng decides


def tiny_cfg(tmp_path):
  cfg = config_files.load(f"{ROOT}/configs/ntp.py:tiny")
  cfg.clip_len, cfg.batch_size = T, 4
  cfg.data.synthetic_count = 32
  cfg.steps, cfg.log_every, cfg.checkpoint_every = 4, 1, 3  # the round at step 2: a forced save
  cfg.dagger.start, cfg.dagger.batch_size = 0.5, 3
  cfg.label.num_clips, cfg.label.batch_size, cfg.label.chunk = 5, 5, 10
  cfg.eval.every, cfg.eval.num_clips, cfg.eval.ratios, cfg.eval.frames = 4, 2, (0.1, 0.5), (0, 1)
  cfg.mesh.shape = (1, 1)
  cfg.labels = str(tmp_path / "labels.json")
  return cfg


@pytest.mark.slow  # label, train to the round, label again, train on, resume: several compiles
def test_the_round_inside_the_ntp_stage(tmp_path):
  cfg = tiny_cfg(tmp_path)
  labelling.run(cfg, cfg.labels, progress=False)  # random reconstructor (smoke)
  table = labels.read(cfg.labels)
  workdir = tmp_path / "ntp"
  report = ntp_trainer.train(cfg, str(workdir), progress=False)
  made = labels.read(str(workdir / dagger.FILE))
  assert report["dagger"]["step"] == 2 and report["dagger"]["clips"] == len(table) == 5
  # the loop's step times of both halves: before the round, and after it (step_times.json)
  assert report["step_times_before_round"] != report["step_times"]
  assert sorted(made) == sorted(table)
  for key, entry in made.items():  # the same lengths as the labels, the model's gazes as history
    labels.validate_entry(key, entry, T, V)
    assert [len(f) for f in entry["history_pos"]] == [len(f) for f in table[key]["gazing_pos"]]
  rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = {r["step"]: r["ntp_loss"] for r in rows if "ntp_loss" in r}
  assert sorted(losses) == [1, 2, 3, 4]
  # stopped after step 3 (past the round): the rerun reads the round's labels and resumes the
  # pipeline's position, so step 4 sees the same batch; stopped at the round's step before its
  # labels were written: the rerun makes the same labels and steps 3 and 4 see the same batches
  for name, gone, want in (("after", ["4"], {4: losses[4]}), ("at", ["3", "4"], {3: losses[3], 4: losses[4]})):
    resumed = tmp_path / name
    shutil.copytree(workdir, resumed)
    for step in gone:
      shutil.rmtree(resumed / "ckpt" / step)
    shutil.rmtree(resumed / "gaze_final")
    (resumed / "metrics.jsonl").unlink()
    if name == "at":
      (resumed / dagger.FILE).unlink()
    again = ntp_trainer.train(cfg, str(resumed), progress=False)
    rows = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["ntp_loss"] for r in rows if "ntp_loss" in r} == want
    assert labels.read(str(resumed / dagger.FILE)) == made
    assert (again["dagger"]["seconds"] is None) == (name == "after")  # read back, or made again
  # a checkpoint past the round without its labels: refused rather than labelled by a later model
  (resumed / dagger.FILE).unlink()
  with pytest.raises(ValueError, match="past the DAgger round"):
    ntp_trainer.train(cfg, str(resumed), progress=False)
  # what the round refuses: labels that already carry history, another run's round labels,
  # soft targets (the round's labels have no candidate losses), K > 1, a start past the steps
  source = pipeline.make_source(pipeline.for_training(cfg), "train", cfg.seed)
  key = next(iter(made))
  with pytest.raises(ValueError, match="does not match config.labels"):
    ntp_trainer.labelled_batches(cfg, source, V, 1, {key: {**made[key], "gazing_pos": made[key]["gazing_pos"][:1]}})
  labels.write(cfg.labels, {**table, key: made[key]})
  with pytest.raises(ValueError, match="carries history_pos"):
    ntp_trainer.labelled_batches(cfg, source, V, 1)
  cfg.loss.soft_targets = 0.01
  with pytest.raises(ValueError, match="soft_targets"):
    dagger.start_step(cfg)
  cfg.loss.soft_targets = 0.0
  cfg.gaze.decoder.num_multi_token_pred = 3
  with pytest.raises(ValueError, match="K = 1.*dagger.start=0"):
    dagger.start_step(cfg)
  cfg.gaze.decoder.num_multi_token_pred, cfg.dagger.start = 1, 0.9  # step 4 of 4: no steps after it
  with pytest.raises(ValueError, match="inside the stage"):
    dagger.start_step(cfg)


@pytest.mark.slow  # train to the round under a preemption notice
def test_a_preemption_notice_at_the_round_stops_the_stage(tmp_path, monkeypatch):
  from autogaze_jax import checkpointing
  from autogaze_jax.train import loop

  cfg = tiny_cfg(tmp_path)
  labelling.run(cfg, cfg.labels, progress=False)
  monkeypatch.setattr(checkpointing.TrainCheckpoints, "reached_preemption", lambda self, step: step == 2)
  workdir = tmp_path / "ntp"
  with pytest.raises(loop.Preempted, match="step 2"):
    ntp_trainer.train(cfg, str(workdir), progress=False)
  # saved at the notice; no round labels, no model handed on
  assert (workdir / "ckpt" / "2").is_dir() and not (workdir / dagger.FILE).exists()
  assert not (workdir / "gaze_final").exists()
  monkeypatch.setattr(checkpointing.TrainCheckpoints, "reached_preemption", lambda self, step: False)
  report = ntp_trainer.train(cfg, str(workdir), progress=False)  # the rerun resumes and finishes
  assert report["dagger"]["step"] == 2 and (workdir / "gaze_final").is_dir()
