"""NTP labels: the official `gazing_labels.json` format (docs/design.md, NTP) and its conversion
to fixed-shape training arrays.

A labels file is one JSON object `{video path: {"gazing_pos": T lists of GLOBAL ids
t * V + local, in selection order, "task_losses": T lists of the same lengths}}`. Keys are
reduced to their last three path components (`DATASET/SPLIT/FILE.mp4`) when read.

For large runs the same entries can live in ArrayRecord files (`*.array_record`): one record
per clip, the JSON of `{"key": path, "gazing_pos": ..., "task_losses": ...}`. They are written
and read by the same functions (chosen by the file name), can be sharded (one file per
labelling host, read back through a glob) and are read record by record instead of as one
JSON document.

An entry may also carry "history_pos" (ours; NTP's DAgger round writes it): T lists as long as
"gazing_pos", the ids the decoder reads as history at each slot when they are not the targets
(the model's own gazes, with the labeller's pick at each of its states in "gazing_pos").

An entry may also carry "candidate_losses" (ours; the greedy labeller writes it when asked): per
frame, per step of its list, the loss each of the V local ids would have given at that step (null
for an id already chosen or not scored). NTP can learn from them as soft targets.

A frame's list may hold the pad -1 (officially between real gazes; anywhere is accepted), as
the official collate reads it: the pad keeps its slot and its task loss is ignored. A frame
needs at least one real gaze.

Arrays (the official collate's semantics with a static cap): per clip, local ids (T, G) with PAD = V,
the number of slots per frame (T,) (the list's length, pads included), and task-loss targets
(T, G) padded with the frame's last value. G is one static cap for every frame, a multiple of K, so one compile
serves every batch; padding is masked everywhere, so it changes no loss.
"""

from __future__ import annotations

import json
import math

import numpy as np

from autogaze_jax import storage

# A pad inside a frame's list (official collate: `if_padded = gazing_pos == -1`): the slot
# exists, keeps its place in the frame's blocks of K, and is masked out of every loss.
PAD_ID = -1


def key_of(path: str) -> str:
  """The last three path components, e.g. '/data/InternVid/train/x.mp4' -> 'InternVid/train/x.mp4'."""
  parts = [p for p in str(path).replace("\\", "/").split("/") if p]
  return "/".join(parts[-3:])


def _expand(paths) -> list[str]:
  items = paths.split(",") if isinstance(paths, str) else list(paths)
  out = []
  for item in (s.strip() for s in items):
    if not item:
      continue
    matches = storage.glob(item) if storage.has_magic(item) else [item]
    if not matches:
      raise FileNotFoundError(f"labels: no file matches {item!r}")
    out.extend(matches)
  if not out:
    raise ValueError("labels: no labels file given")
  return out


def read(paths) -> dict:
  """Reads one or more labels files (a list, or comma-separated paths/glob patterns).

  Later files override earlier ones key by key; keys are reduced with `key_of`.
  """
  merged = {}
  for path in _expand(paths):
    if not storage.exists(path) or storage.is_dir(path):
      raise FileNotFoundError(f"labels: {path} does not exist")
    data = _read_records(path) if path.endswith(RECORD_SUFFIX) else _read_json(path)
    for key, entry in data.items():
      merged[key_of(key)] = entry
  return merged


RECORD_SUFFIX = ".array_record"


def _read_json(path: str) -> dict:
  try:
    data = json.loads(storage.path(path).read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"labels: {path} is not valid JSON: {e}") from None
  if not isinstance(data, dict):
    raise ValueError(f"labels: {path} must hold one JSON object keyed by video path")
  return data


def _read_records(path: str) -> dict:
  from array_record.python import array_record_module as arm

  check_output(path)
  try:  # the library raises bare RuntimeError/ValueError on a file that is not ArrayRecord
    reader = arm.ArrayRecordReader(path)
    try:
      records = reader.read_all()
    finally:
      reader.close()
  except (RuntimeError, ValueError) as e:
    raise ValueError(f"labels: {path} is not a readable ArrayRecord file: {e}") from None
  out = {}
  for i, record in enumerate(records):
    try:
      entry = json.loads(record)
      out[entry.pop("key")] = entry
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
      raise ValueError(f"labels: record {i} of {path} is not a JSON object with a 'key'") from None
  return out


def write(path: str, labels: dict) -> None:
  """Writes labels in the official format (plain ints and floats; `candidate_losses` kept where an
  entry has them), or as ArrayRecord when `path` ends in .array_record (one JSON record per clip)."""
  def plain(e):
    out = {"gazing_pos": [[int(g) for g in fr] for fr in e["gazing_pos"]],
           "task_losses": [[float(x) for x in fr] for fr in e["task_losses"]]}
    if "history_pos" in e:
      out["history_pos"] = [[int(g) for g in fr] for fr in e["history_pos"]]
    if "candidate_losses" in e:
      out["candidate_losses"] = [[[None if x is None else float(x) for x in step] for step in fr]
                                 for fr in e["candidate_losses"]]
    return out

  out = {key: plain(e) for key, e in labels.items()}
  if path.endswith(RECORD_SUFFIX):
    from array_record.python import array_record_module as arm

    check_output(path)
    storage.makedirs(storage.path(path).parent)  # storage.write_text makes them for JSON
    writer = arm.ArrayRecordWriter(path, "group_size:1")
    for key, entry in out.items():
      writer.write(json.dumps({"key": key, **entry}).encode())
    writer.close()
    return
  storage.write_text(path, json.dumps(out))


def check_output(path: str) -> None:
  """JSON labels go anywhere `storage` reaches; ArrayRecord files only to local or mounted paths."""
  if storage.is_url(path) and path.endswith(RECORD_SUFFIX):
    raise ValueError(f"labels: {path}: ArrayRecord labels need a local or mounted path; "
                     "write JSON labels (.json) to an object store")


def validate_entry(key: str, entry, num_frames: int, vocab: int) -> None:
  """Raises ValueError naming the clip and frame of the first problem."""
  if not isinstance(entry, dict) or "gazing_pos" not in entry or "task_losses" not in entry:
    raise ValueError(f"labels[{key!r}]: needs keys 'gazing_pos' and 'task_losses'")
  pos, losses = entry["gazing_pos"], entry["task_losses"]
  if len(pos) != num_frames or len(losses) != num_frames:
    raise ValueError(
      f"labels[{key!r}]: expected {num_frames} frames, got {len(pos)} gazing_pos and {len(losses)} task_losses lists"
    )
  for t, (ids, ls) in enumerate(zip(pos, losses)):
    if len(ids) == 0:
      raise ValueError(f"labels[{key!r}]: frame {t} has no gazes (every frame list must be non-empty)")
    if len(ids) != len(ls):
      raise ValueError(f"labels[{key!r}]: frame {t} has {len(ids)} gazes but {len(ls)} task_losses")
    lo, hi = t * vocab, (t + 1) * vocab
    bad = [g for g in ids if not (isinstance(g, (int, np.integer)) and (lo <= g < hi or g == PAD_ID))]
    if bad:
      raise ValueError(
        f"labels[{key!r}]: frame {t} holds {bad[0]!r}, not a global id in [{lo}, {hi}) or the pad {PAD_ID} "
        f"(gazing_pos must be global ids t * {vocab} + local)"
      )
    real = [g for g in ids if g != PAD_ID]
    if not real:
      raise ValueError(f"labels[{key!r}]: frame {t} has only pads (every frame needs a real gaze)")
    if len(set(real)) != len(real) and "history_pos" not in entry:  # targets at own states may repeat
      raise ValueError(f"labels[{key!r}]: frame {t} repeats a gaze")
    if not all(np.isfinite(float(x)) for x in ls):
      raise ValueError(f"labels[{key!r}]: frame {t} has a non-finite task loss")
  if "history_pos" in entry:
    _validate_history(key, entry, vocab)
  if "candidate_losses" in entry:
    cands = entry["candidate_losses"]
    if len(cands) != num_frames:
      raise ValueError(f"labels[{key!r}]: candidate_losses has {len(cands)} frames, expected {num_frames}")
    for t, (ids, steps) in enumerate(zip(pos, cands)):
      if len(steps) != len(ids) or any(len(step) != vocab for step in steps):
        raise ValueError(f"labels[{key!r}]: frame {t}'s candidate_losses must hold one list of {vocab} "
                         f"losses per gaze ({len(ids)})")


def _validate_history(key: str, entry, vocab: int) -> None:
  """history_pos: per frame as long as gazing_pos, real global ids of that frame without repeats,
  and no target already among the history before its slot."""
  hist = entry["history_pos"]
  if len(hist) != len(entry["gazing_pos"]):
    raise ValueError(f"labels[{key!r}]: history_pos has {len(hist)} frames, gazing_pos {len(entry['gazing_pos'])}")
  for t, (fed, ids) in enumerate(zip(hist, entry["gazing_pos"])):
    if len(fed) != len(ids):
      raise ValueError(f"labels[{key!r}]: frame {t} has {len(fed)} history_pos for {len(ids)} gazing_pos")
    lo, hi = t * vocab, (t + 1) * vocab
    if not all(isinstance(g, (int, np.integer)) and lo <= g < hi for g in fed):
      raise ValueError(f"labels[{key!r}]: frame {t}'s history_pos must be global ids in [{lo}, {hi})")
    if len(set(fed)) != len(fed):
      raise ValueError(f"labels[{key!r}]: frame {t}'s history_pos repeats a gaze")
    for s, g in enumerate(ids):
      if g in fed[:s]:
        raise ValueError(f"labels[{key!r}]: frame {t} slot {s}'s target {g} is already in its history")


def slot_cap(labels: dict, k: int) -> int:
  """The smallest static per-frame slot count (a multiple of K) that holds every label."""
  longest = max((len(fr) for e in labels.values() for fr in e["gazing_pos"]), default=1)
  return k * math.ceil(longest / k)


def to_arrays(entry, vocab: int, slots: int, key: str = "?"):
  """One clip's labels -> local ids (T, G) int32 (PAD = V), lens (T,) int32, targets (T, G) f32."""
  num_frames = len(entry["gazing_pos"])
  validate_entry(key, entry, num_frames, vocab)
  ids = np.full((num_frames, slots), vocab, np.int32)
  lens = np.zeros((num_frames,), np.int32)
  targets = np.zeros((num_frames, slots), np.float32)
  for t, (pos, ls) in enumerate(zip(entry["gazing_pos"], entry["task_losses"])):
    n = len(pos)
    if n > slots:
      raise ValueError(f"labels[{key!r}]: frame {t} has {n} gazes, more than the {slots} slots per frame")
    pos = np.asarray(pos, np.int64)
    ids[t, :n] = np.where(pos == PAD_ID, vocab, pos - t * vocab)
    lens[t] = n
    targets[t, :n] = ls
    targets[t, n:] = ls[-1]
  return ids, lens, targets


def history_array(entry, vocab: int, slots: int) -> np.ndarray:
  """One clip's history ids (T, G) local, PAD = V past each frame's list: its `history_pos` when
  it has one, else its `gazing_pos` (teacher forcing reads the labels themselves)."""
  frames = entry.get("history_pos", entry["gazing_pos"])
  out = np.full((len(frames), slots), vocab, np.int32)
  for t, pos in enumerate(frames):
    pos = np.asarray(pos, np.int64)
    out[t, : len(pos)] = np.where(pos == PAD_ID, vocab, pos - t * vocab)
  return out


def candidate_array(entry, vocab: int, slots: int, key: str = "?") -> np.ndarray:
  """One clip's `candidate_losses` -> (T, G, V) float32, inf where an id was not available
  (already chosen, not scored, or a slot past the frame's list)."""
  if "candidate_losses" not in entry:
    raise ValueError(f"labels[{key!r}]: has no candidate_losses (label with label.candidate_losses=True "
                     "to train on soft targets)")
  frames = entry["candidate_losses"]
  out = np.full((len(frames), slots, vocab), np.inf, np.float32)
  for t, steps in enumerate(frames):
    for s, step in enumerate(steps[:slots]):
      out[t, s] = [np.inf if x is None else x for x in step]
  return out


def collate(entries, vocab: int, slots: int, keys=None) -> dict:
  """A batch of clips' labels -> {"ids": (B, T, G), "lens": (B, T), "task_losses": (B, T, G)}."""
  keys = list(keys) if keys is not None else [str(i) for i in range(len(entries))]
  arrays = [to_arrays(e, vocab, slots, k) for e, k in zip(entries, keys)]
  if not arrays:
    raise ValueError("labels: cannot collate an empty batch")
  frames = {a[0].shape[0] for a in arrays}
  if len(frames) != 1:
    raise ValueError(f"labels: clips in one batch have different frame counts {sorted(frames)}")
  ids, lens, targets = (np.stack(x) for x in zip(*arrays))
  return {"ids": ids, "lens": lens, "task_losses": targets}


def from_arrays(ids_tg, lens_t, losses_tg, vocab: int) -> dict:
  """The inverse of `to_arrays`: one clip's official entry with global ids."""
  ids, lens, losses = np.asarray(ids_tg), np.asarray(lens_t), np.asarray(losses_tg)
  return {
    "gazing_pos": [[PAD_ID if g == vocab else int(g) + t * vocab for g in ids[t, : lens[t]]]
                   for t in range(ids.shape[0])],
    "task_losses": [[float(x) for x in losses[t, : lens[t]]] for t in range(ids.shape[0])],
  }
