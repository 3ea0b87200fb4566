"""NTP's DAgger round (ours, not the official recipe; docs/design.md, "DAgger round").

Teacher forcing only ever shows the gaze model the labeller's own history; gazing alone it reads
its own, and its first mistakes lead it to states no label covers. After the fraction
`dagger.start` of its steps the NTP stage pauses and
  1. the model trained so far gazes every labelled clip alone (greedy, as many gazes per frame
     as the clip's label has there: with eps 0, as `tiny` labels, the budget it was searched at);
  2. the labeller is asked, at every state those gazes reach (the model's gazes of the earlier
     frames and its own picks so far in this frame), which id it would add next
     (`labelling.GreedySearch.follow`);
  3. these become a second label per clip, `history_pos` = the model's gazes (read as history),
     `gazing_pos` = the labeller's picks (the targets), `task_losses` = the loss after each of
     the model's own gazes, written to <workdir>/dagger_labels.json (kept for a resumed run);
and the rest of the stage draws each clip's labels from them with probability `dagger.share`.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import distributed, storage
from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.data import labels as labels_lib
from autogaze_jax.models import decoding
from autogaze_jax.train import labelling, oracle

FILE = "dagger_labels.json"
ROLLOUT_BATCHES = 16  # batches of clips gazed before their labeller steps (clips of one budget decode together)


def start_step(cfg) -> int:
  """The step of the round (0: none) from dagger.start, checked: a fraction of the steps in
  [0, 1) that lands inside the stage, for a model with one gaze per decoding step (with K > 1 the
  ids of a block are predicted together, not each from the state after the one before)."""
  dc = cfg.get("dagger")
  start = float(dc.start) if dc is not None else 0.0
  if start == 0.0:
    return 0
  at = round(start * cfg.steps)
  off = "; --config.dagger.start=0 turns the round off"
  if not (0.0 < start < 1.0 and 0 < at < cfg.steps):
    raise ValueError(f"ntp: dagger.start={start} must be 0 (off) or a fraction in (0, 1) that lands inside the "
                     f"stage's {cfg.steps} steps (here step {at}){off}")
  if cfg.gaze.decoder.num_multi_token_pred != 1:
    raise ValueError(f"ntp: dagger.start needs a gaze model with one gaze per decoding step (K = 1), "
                     f"not K = {cfg.gaze.decoder.num_multi_token_pred}{off}")
  if float(cfg.loss.get("soft_targets", 0.0)) > 0:
    raise ValueError(f"ntp: the DAgger round's labels have no candidate losses for loss.soft_targets{off}")
  if not 0.0 < float(dc.share) <= 1.0:
    raise ValueError(f"ntp: dagger.share={dc.share} must be in (0, 1]")
  if int(dc.batch_size) < 1:
    raise ValueError(f"ntp: dagger.batch_size={dc.batch_size} must be >= 1")
  return at


class Rollouts:
  """A gaze model's greedy gazes at given per-frame budgets, one compiled program for every
  budget (traced) of batches of `batch` clips sized for `slots` gazes per frame."""

  def __init__(self, model, slots: int, batch: int):
    self.graphdef, self.state = nnx.split(model)
    self.vocab, self.slots, self.batch = model.gaze_decoder.vocab - 1, slots, batch
    spec = decoding.DecodeSpec(slots=slots)

    @jax.jit
    def gaze(state, clips_u8, budgets_t):
      model = nnx.merge(self.graphdef, state)
      video = image_lib.normalize_on_device(clips_u8)
      b, t = video.shape[:2]
      return decoding.generate(model, video, budgets_t, jnp.zeros((b, t)), None, 1.0, spec)[0]

    self._gaze = gaze

  def __call__(self, clips_u8: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """uint8 clips (N, T, S, S, 3), per-frame budgets (N, T) -> local ids (N, T, slots), PAD
    past each frame's budget. Clips whose budgets are alike are gazed together."""
    n, t = lens.shape
    if (lens < 1).any() or (lens > self.slots).any():
      raise ValueError(f"dagger: budgets must be in [1, {self.slots}]")
    out = np.full((n, t, self.slots), self.vocab, np.int32)
    rows, group = np.unique(lens, axis=0, return_inverse=True)
    for g, budgets in enumerate(rows):
      members = np.flatnonzero(group.ravel() == g)
      for c0 in range(0, len(members), self.batch):
        sel = members[c0:c0 + self.batch]
        clips = clips_u8[np.pad(sel, (0, self.batch - len(sel)), mode="edge")]
        ids = np.asarray(self._gaze(self.state, clips, jnp.asarray(budgets, jnp.int32)))[: len(sel)]
        out[sel] = np.where(np.arange(self.slots) < budgets[:, None], ids, self.vocab)
    return out


def new_labels(model, search: labelling.GreedySearch, clips, table: dict, slots: int, batch: int,
               progress: bool = True, total: int | None = None) -> dict:
  """{key: entry with history_pos} for the (key, uint8 clip) pairs of `clips` that have labels in
  `table`: the model's greedy gazes at each frame's label length as history, the labeller's pick
  at each of their states as targets (module docstring). Clips are gazed ROLLOUT_BATCHES batches at a time
  (those of one budget row together) and labelled `batch` at a time (the last batch padded)."""
  from tqdm import tqdm

  vocab = search.vocab
  roll = Rollouts(model, slots, batch)
  out, keys, chunk = {}, [], []
  bar = tqdm(total=total, desc="dagger labels", unit="clip", disable=not progress, dynamic_ncols=True)

  def flush():
    lens = np.stack([labels_lib.to_arrays(table[k], vocab, slots, k)[1] for k in keys])
    stack = np.stack(chunk)
    states = roll(stack, lens)
    for c0 in range(0, len(keys), batch):
      sel = np.arange(c0, min(c0 + batch, len(keys)))
      full = np.pad(sel, (0, batch - len(sel)), mode="edge")  # one compiled labeller step for every batch
      picks, losses = search.follow(stack[full], states[full], lens[full], call=len(out))
      for j, i in enumerate(sel):
        entry = labels_lib.from_arrays(picks[j], lens[i], losses[j], vocab)
        entry["history_pos"] = labels_lib.from_arrays(states[i], lens[i], losses[j], vocab)["gazing_pos"]
        out[keys[i]] = entry
      bar.update(len(sel))
    keys.clear()
    chunk.clear()

  for key, clip in clips:
    key = labels_lib.key_of(key)
    if key not in table:
      continue
    keys.append(key)
    chunk.append(np.asarray(clip, np.uint8))
    if len(keys) == ROLLOUT_BATCHES * batch:
      flush()
  if keys:
    flush()
  bar.close()
  return out


def round_labels(cfg, model, source, indices, table: dict, slots: int, workdir: str, done: int, recon=None,
                 progress: bool = True):
  """(the round's labels, a summary): read from <workdir>/dagger_labels.json when a run wrote
  them, else made with `model` (which must be the model at the round's step, `done`) on one
  device, every process alike, and written by process 0. recon: the labeller's reconstructor
  (default: cfg.oracle's)."""
  path = os.path.join(workdir, FILE)
  if storage.exists(path):
    entries = labels_lib.read(path)
    return entries, summary(entries, None)
  if done != start_step(cfg):
    raise ValueError(f"ntp: {workdir} holds a checkpoint at step {done}, past the DAgger round's step "
                     f"{start_step(cfg)}, but no {FILE}; use a fresh workdir")
  t0 = time.perf_counter()
  lc, data = cfg.label, cfg.data
  one = mesh_lib.make_mesh((1, 1), devices=jax.local_devices()[:1])
  with mesh_lib.use(one):
    if recon is None:
      recon = oracle.load_reconstructor(cfg.oracle.model, one, workdir=cfg.oracle.workdir,
                                        weights=cfg.oracle.weights)
    recon = _on_device(recon, jax.local_devices()[0])  # a given one may live on the training mesh
    model = _on_device(model, jax.local_devices()[0])
    search = labelling.GreedySearch(recon, [slots] * cfg.clip_len, 0.0, num_candidates=lc.num_candidates or None,
                                    chunk=lc.chunk, seed=cfg.seed + 1)
    clips = labelling.source_clips(data, None, cfg.seed, indices=indices, source=source)
    entries = new_labels(model, search, clips, table, slots, int(cfg.dagger.batch_size), progress, len(indices))
  if not entries:
    raise ValueError("ntp: the DAgger round found none of the labelled clips")
  if distributed.is_main():
    _write(path, entries)
  out = summary(entries, time.perf_counter() - t0)
  print(f"[ntp] DAgger labels for {out['clips']} clips in {out['seconds']:.0f} s; the labeller's pick is the "
        f"model's own at {out['labeller_agrees_with_model']:.0%} of its states", flush=True)
  return entries, out


def _write(path: str, entries: dict) -> None:
  """Whole or not at all: a local file is written beside and renamed (an object store's write
  is already atomic), so a crash never leaves half a labels file that a rerun would trust."""
  if storage.is_url(path):
    labels_lib.write(path, entries)
    return
  part = path + ".partial"
  labels_lib.write(part, entries)
  os.replace(part, path)


def summary(entries: dict, seconds) -> dict:
  """Clips, the share of the model's states where the labeller would have picked the model's
  own id, and the seconds the labels took (None: read from an earlier run)."""
  same = [a == b for e in entries.values() for p, h in zip(e["gazing_pos"], e["history_pos"]) for a, b in zip(p, h)]
  return {"clips": len(entries), "labeller_agrees_with_model": float(np.mean(same)),
          "seconds": None if seconds is None else round(seconds, 1)}


def _on_device(model, device):
  """A copy of `model` whose arrays all live on `device` (the training state may be sharded)."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, jax.device_put(jax.device_get(state), device))
