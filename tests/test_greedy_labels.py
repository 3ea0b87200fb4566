"""Greedy label search: equals a brute-force loop, stops at ε, the subset variant, the file,
the clips (the data pipeline's, bad videos skipped)."""

import jax
import numpy as np
import pytest
from flax import nnx
from helpers import broken_videos as bv

from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import data_config, labels, pipeline, synthetic
from autogaze_jax.models import recon_config
from autogaze_jax.models.reconstructor import Reconstructor
from autogaze_jax.train import labelling, task

T, BUDGETS = 2, (3, 2)


@pytest.fixture(scope="module")
def recon():
  cfg = recon_config.recon_config("tiny")
  cfg.scales = (32, 64)
  with mesh_lib.use(mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])):
    return Reconstructor(cfg, nnx.Rngs(0))


@pytest.fixture(scope="module")
def clips():
  return np.stack([synthetic.make_clip(T, 64, seed=s) for s in (5, 6)])


@pytest.fixture(scope="module")
def full(recon, clips):
  return labelling.GreedySearch(recon, BUDGETS, eps=-1.0, chunk=8)(clips)


def brute_force(recon, clip, vocab=20):
  """The greedy loop of docs/design.md, "Greedy labels", one candidate per reconstructor call."""
  from autogaze_jax import image as image_lib

  video = jax.numpy.asarray(image_lib.normalize(clip))[None]
  loss_of = jax.jit(lambda ids, t: task.evaluate(
    recon, video, ids, jax.numpy.full((1, T), max(BUDGETS)), t[None])["loss_each_frame"][0, 0])
  ids = np.full((1, T, max(BUDGETS)), vocab, np.int32)
  pos, losses, seconds, every = [], [], [], []
  for t in range(T):
    seq, ls, sec, ev = [], [], [], []
    for s in range(BUDGETS[t]):
      trial = {}
      for c in sorted(set(range(vocab)) - set(seq)):
        cand = ids.copy()
        cand[0, t, s] = c
        trial[c] = float(loss_of(cand, np.int32(t)))
      best = min(trial, key=trial.get)
      ids[0, t, s] = best
      ev.append([trial.get(c, np.nan) for c in range(vocab)])
      seq.append(best), ls.append(trial[best]), sec.append(sorted(trial.values())[1])
    pos.append([c + t * vocab for c in seq]), losses.append(ls), seconds.append(sec), every.append(ev)
  return pos, losses, seconds, every


def test_greedy_matches_brute_force(recon, clips):
  got = labelling.GreedySearch(recon, BUDGETS, eps=-1.0, chunk=8)(clips, runner_up=True, candidates=True)
  for clip, entry in zip(clips, got):
    pos, losses, seconds, every = brute_force(recon, clip)
    assert entry["gazing_pos"] == pos
    np.testing.assert_allclose(sum(entry["task_losses"], []), sum(losses, []), rtol=1e-5)
    np.testing.assert_allclose(sum(entry["runner_up_losses"], []), sum(seconds, []), rtol=1e-5)
    # every candidate's loss at every step; the ids chosen before that step are None
    got_every = [[np.nan if x is None else x for x in step] for fr in entry["candidate_losses"] for step in fr]
    np.testing.assert_allclose(got_every, sum(every, []), rtol=1e-5)


def test_stops_at_eps(recon, clips, full):
  eps = full[0]["task_losses"][0][1]  # clip 0 reaches it with its 2nd gaze of frame 0
  got = labelling.GreedySearch(recon, BUDGETS, eps=eps, chunk=8)(clips)
  assert got[0]["gazing_pos"][0] == full[0]["gazing_pos"][0][:2]
  for entry in got:
    for t, ls in enumerate(entry["task_losses"]):
      assert all(x > eps for x in ls[:-1]) and (ls[-1] <= eps or len(ls) == BUDGETS[t])


def test_random_candidate_subset(recon, clips, full):
  got = labelling.GreedySearch(recon, BUDGETS, eps=-1.0, num_candidates=5, chunk=4, seed=1)(clips)
  for entry, best in zip(got, full):
    for t, ids in enumerate(entry["gazing_pos"]):
      assert len(ids) == BUDGETS[t] and len(set(ids)) == len(ids)
    assert entry["task_losses"][0][0] >= best["task_losses"][0][0] - 1e-6  # a subset cannot beat all


def data_cfg(**kw):
  cfg = data_config.data_config()
  cfg.update(clip_len=T, image_size=64, synthetic_count=5, **kw)
  return cfg


def test_label_clips_writes_a_loadable_file(recon, tmp_path):
  search = labelling.GreedySearch(recon, BUDGETS, eps=0.0, num_candidates=4, chunk=4)
  clips = labelling.source_clips(data_cfg(), 3, seed=2)
  entries = labelling.label_clips(search, clips, batch_size=2, progress=False)
  labels.write(str(tmp_path / "l.json"), entries)
  back = labels.read(str(tmp_path / "l.json"))
  source = pipeline.make_source(data_cfg(), "train", 2)
  assert sorted(back) == [source.key(i) for i in range(3)]  # the keys the NTP data source joins on
  batch = labels.collate(list(back.values()), 20, labels.slot_cap(back, 3))
  assert batch["ids"].shape == (3, T, 3) and (batch["lens"] == np.array(BUDGETS)).all()
  with pytest.raises(ValueError, match="budgets"):
    labelling.GreedySearch(recon, (0, 2), eps=0.0)


def test_source_clips_are_the_pipeline_clips_and_skip_bad_videos(tmp_path):
  (tmp_path / "train").mkdir()
  bv.good(tmp_path / "train" / "a.mp4", frames=4, size=80)
  bv.not_a_video(tmp_path / "train" / "b.mp4")
  bv.good(tmp_path / "train" / "c.mp4", frames=4, size=80, seed=1)
  cfg = data_cfg(source="folder", root=str(tmp_path))
  got = list(labelling.source_clips(cfg, 10))
  assert [labels.key_of(k) for k, _ in got] == [f"{tmp_path.name}/train/{n}.mp4" for n in "ac"]
  assert all(c.shape == (T, 64, 64, 3) and c.dtype == np.uint8 for _, c in got)
  (key, clip), = labelling.source_clips(data_cfg(), 1, seed=2)
  np.testing.assert_array_equal(clip, pipeline.make_source(data_cfg(), "train", 2).load(0))
  with pytest.raises(ValueError, match="strict"):
    list(labelling.source_clips(data_cfg(source="folder", root=str(tmp_path), strict=True), 10))


def test_per_clip_budgets_are_each_clips_own(recon, clips, full):
  out = labelling.GreedySearch(recon, BUDGETS, eps=-1.0, chunk=8)(clips, budgets=np.array([[3, 1], [1, 2]]))
  assert [len(f) for f in out[0]["gazing_pos"]] == [3, 1] and [len(f) for f in out[1]["gazing_pos"]] == [1, 2]
  # a shorter budget is a prefix of the full search on the frames before it (greedy, frame by frame)
  assert out[0]["gazing_pos"][0] == full[0]["gazing_pos"][0]
  assert out[1]["gazing_pos"][0] == full[1]["gazing_pos"][0][:1]
  with pytest.raises(ValueError, match="per-clip budgets"):
    labelling.GreedySearch(recon, BUDGETS, eps=-1.0)(clips, budgets=np.array([[4, 1], [1, 1]]))


def test_dirichlet_budgets_follow_the_papers_recipe():
  rng = np.random.default_rng(0)
  b = labelling.dirichlet_budgets(rng, 4000, 16, 265, 10.0, 3.0, (0.02, 0.2))
  assert b.shape == (4000, 16) and b.min() >= 1 and b.max() <= 265
  ratio = b.mean(1) / 265
  assert 0.015 < ratio.min() and ratio.max() < 0.21  # each clip's average within the range (floor of 1 aside)
  # log-uniform between the ends: the median average ratio near sqrt(0.02 * 0.2)
  assert np.median(ratio) == pytest.approx(np.sqrt(0.02 * 0.2), rel=0.15)
  # Dirichlet means: the first frame gets 10 / 3 of a later frame's tokens on average
  assert b[:, 0].mean() / b[:, 1:].mean() == pytest.approx(10 / 3, rel=0.2)
  with pytest.raises(ValueError, match="ratio_range"):
    labelling.dirichlet_budgets(rng, 2, 16, 265, 10.0, 3.0, (0.3, 0.2))
