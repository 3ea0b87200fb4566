"""Greedy NTP labels (docs/design.md, "Greedy labels"): for each clip, frame by frame, repeatedly add the
gaze whose inclusion gives the lowest reconstruction loss of that frame, until the loss is
<= ε or the frame's budget is spent; record every step's loss.

The MAE is block-causal, so frame t's loss depends only on frames <= t and the search can
fix frames in order. One jitted call per greedy step scores every candidate of every clip:
the frames before t are encoded once per step and the candidates reuse them
(`models/frame_variants.py`), `chunk` candidates of every clip at a time (`lax.map`). `num_candidates` < V is the cheaper variant: a fresh random subset of the
not-yet-chosen tokens per step. The loss is the reconstructor's per-frame L1 (the task's
loss without perceptual terms).
"""

from __future__ import annotations

import functools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax.models import frame_variants, recon_config
from autogaze_jax.train import task

log = logging.getLogger("autogaze_jax.label")


def candidate_losses(recon, video, ids_btg, t, s, cand_bc, chunk: int):
  """Frame t's L1 loss (B, C) with candidate cand[b, c] (local id) put at slot s of frame t.
  What frames < t fix is computed once (`frame_variants.prefix`); each candidate then costs
  only frame t's slots and canvas."""
  b, c = cand_bc.shape
  n = math.ceil(c / chunk)
  cand = jnp.pad(cand_bc, ((0, 0), (0, n * chunk - c))).T.reshape(n, chunk, b)
  tokens = recon.embed_all(video)
  shared = frame_variants.prefix(recon, tokens, ids_btg, t)
  frame_ids = jax.lax.dynamic_index_in_dim(ids_btg, t, axis=1, keepdims=False)  # (B, G)
  target = jax.lax.dynamic_index_in_dim(video, t, axis=1, keepdims=False)  # (B, 3, H, W)

  def one(cs):  # (chunk, B) -> (chunk, B)
    ids = jnp.broadcast_to(frame_ids[None], (chunk, *frame_ids.shape)).at[:, :, s].set(cs)
    pred = frame_variants.reconstruct(recon, shared, tokens, ids, t)  # (chunk, B, 3, S, S)
    size = pred.shape[-1]
    tgt = target if target.shape[-1] == size else image_lib.resize_bicubic(target, (size, size))
    return task.frame_loss(pred, jnp.broadcast_to(tgt[None], pred.shape))[1]

  return jax.lax.map(one, cand).reshape(n * chunk, b).T[:, :c]


def greedy_step(recon_def, recon_state, clips_u8, ids_btg, chosen_bv, t, s, key, *, num_candidates: int,
                chunk: int):
  """The best next gaze of frame t per clip: (local id (B,), loss after adding it (B,), the
  runner-up candidate's loss (B,), inf when only one was left, and every id's loss (B, V), inf
  for the ids already chosen or not among the scored candidates)."""
  recon = nnx.merge(recon_def, recon_state)
  video = image_lib.normalize_on_device(clips_u8)
  b, v = chosen_bv.shape
  if num_candidates >= v:
    cand = jnp.broadcast_to(jnp.arange(v, dtype=jnp.int32), (b, v))
  else:
    score = jnp.where(chosen_bv, -1.0, jax.random.uniform(key, (b, v)))
    cand = jax.lax.top_k(score, num_candidates)[1].astype(jnp.int32)
  taken = jnp.take_along_axis(chosen_bv, cand, 1)
  losses = jnp.where(taken, jnp.inf, candidate_losses(recon, video, ids_btg, t, s, cand, chunk))
  best = jnp.argmin(losses, 1)[:, None]
  runner_up = jnp.min(jnp.where(jnp.arange(losses.shape[1]) == best, jnp.inf, losses), 1)
  per_id = jnp.full((b, v), jnp.inf, losses.dtype).at[jnp.arange(b)[:, None], cand].set(losses)
  return jnp.take_along_axis(cand, best, 1)[:, 0], jnp.take_along_axis(losses, best, 1)[:, 0], runner_up, per_id


def _given_losses(recon_def, recon_state, clips_u8, ids_btg, t, s, cand_bc):
  """Frame t's loss (B, C) with each given candidate at slot s (`candidate_losses`, one chunk)."""
  recon = nnx.merge(recon_def, recon_state)
  return candidate_losses(recon, image_lib.normalize_on_device(clips_u8), ids_btg, t, s, cand_bc, cand_bc.shape[1])


# fixed: config ratios for the first and later frames; dirichlet: the paper's per-clip draw;
# uniform: one per-clip ratio for every frame.
BUDGET_MODES = ("fixed", "dirichlet", "uniform")


class GreedySearch:
  """Compiled greedy search with a frozen reconstructor; call it on batches of uint8 clips."""

  def __init__(self, recon, budgets, eps: float, *, num_candidates: int | None = None, chunk: int = 16,
               seed: int = 0):
    self.vocab = sum(recon_config.tokens_per_scale(recon.cfg))
    self.budgets = [int(x) for x in budgets]
    if min(self.budgets) < 1 or max(self.budgets) > self.vocab:
      raise ValueError(f"greedy labels: budgets must be in [1, {self.vocab}], got {self.budgets}")
    self.eps = float(eps)
    self.num_candidates = min(self.vocab, num_candidates or self.vocab)
    if self.num_candidates < 1:
      raise ValueError(f"greedy labels: num_candidates must be >= 1, got {num_candidates}")
    self.recon_def, self.recon_state = nnx.split(recon)
    self.key = jax.random.key(seed)
    self.step = jax.jit(functools.partial(greedy_step, self.recon_def, num_candidates=self.num_candidates,
                                          chunk=min(chunk, self.num_candidates)))
    self.own_loss = jax.jit(functools.partial(_given_losses, self.recon_def))

  def __call__(self, clips_u8: np.ndarray, call: int = 0, budgets=None, runner_up: bool = False,
               candidates: bool = False) -> list[dict]:
    """uint8 clips (B, T, H, W, 3) -> B label entries {gazing_pos (global), task_losses}.
    budgets: per clip and frame (B, T), each at most the search's own per-frame budget
    (default: the search's budgets for every clip). runner_up: entries also carry
    `runner_up_losses`, each step's second-best candidate loss (how close the pick's call was).
    candidates: entries also carry `candidate_losses`, per frame and step the loss every local
    id would have given there (None: already chosen or not scored), NTP's soft targets."""
    b, t = clips_u8.shape[:2]
    if len(self.budgets) != t:
      raise ValueError(f"greedy labels: {len(self.budgets)} budgets for clips of {t} frames")
    caps = np.asarray(self.budgets)
    budgets = np.broadcast_to(caps, (b, t)) if budgets is None else np.asarray(budgets, np.int64)
    if budgets.shape != (b, t) or (budgets < 1).any() or (budgets > caps).any():
      raise ValueError(f"greedy labels: per-clip budgets must be (B, T) = {(b, t)} in [1, {caps.tolist()}]")
    clips = jnp.asarray(clips_u8)
    ids = np.full((b, t, max(self.budgets)), self.vocab, np.int32)
    pos = [[[] for _ in range(t)] for _ in range(b)]
    losses = [[[] for _ in range(t)] for _ in range(b)]
    seconds = [[[] for _ in range(t)] for _ in range(b)]
    every = [[[] for _ in range(t)] for _ in range(b)]
    for ti in range(t):
      chosen = np.zeros((b, self.vocab), bool)
      active = np.ones((b,), bool)
      for s in range(int(budgets[:, ti].max())):
        key = jax.random.fold_in(self.key, (call * t + ti) * self.vocab + s)
        pick, loss, second, per_id = jax.device_get(
          self.step(self.recon_state, clips, ids, chosen, jnp.int32(ti), jnp.int32(s), key))
        for i in np.flatnonzero(active):
          ids[i, ti, s] = pick[i]
          chosen[i, pick[i]] = True
          pos[i][ti].append(int(pick[i]) + ti * self.vocab)
          losses[i][ti].append(float(loss[i]))
          seconds[i][ti].append(float(second[i]))
          if candidates:
            every[i][ti].append([float(x) if np.isfinite(x) else None for x in per_id[i]])
          active[i] = loss[i] > self.eps and s + 1 < budgets[i, ti]
        if not active.any():
          break
    extra = lambda i: {**({"runner_up_losses": seconds[i]} if runner_up else {}),
                       **({"candidate_losses": every[i]} if candidates else {})}
    return [{"gazing_pos": pos[i], "task_losses": losses[i], **extra(i)} for i in range(b)]

  def follow(self, clips_u8: np.ndarray, states: np.ndarray, lens: np.ndarray, call: int = 0):
    """The labeller at states it did not choose: at every slot (t, s < lens[b, t]) of `states`
    (B, T, G local ids, e.g. a gaze model's own gazes; the frames before t and the slots before
    s as given), its greedy next id among those not in the state yet, and the loss after the
    state's own id at that slot (what the task-loss head must predict along that path).
    Returns (picks (B, T, G), PAD = V past each frame's length; losses (B, T, G)). With
    `states` = the search's own labels this gives back those labels and their losses."""
    b, t, g = states.shape
    width = max(self.budgets)
    if len(self.budgets) != t or g > width or (lens < 1).any() or (lens > g).any():
      raise ValueError(f"greedy labels: follow needs states (B, T, <= {width}) for clips of {len(self.budgets)} "
                       f"frames and lengths in [1, G], got {states.shape} and lengths in "
                       f"[{lens.min()}, {lens.max()}]")
    picks = np.full(states.shape, self.vocab, np.int32)
    losses = np.zeros(states.shape, np.float32)
    clips = jnp.asarray(clips_u8)
    ids = np.full((b, t, width), self.vocab, np.int32)
    rows = np.arange(b)
    for ti in range(t):
      chosen = np.zeros((b, self.vocab), bool)
      for s in range(int(lens[:, ti].max())):
        key = jax.random.fold_in(self.key, (call * t + ti) * self.vocab + s)
        pick, _, _, per_id = jax.device_get(
          self.step(self.recon_state, clips, ids, chosen, jnp.int32(ti), jnp.int32(s), key))
        live = s < lens[:, ti]
        own = states[:, ti, s]
        own_loss = per_id[rows, np.minimum(own, self.vocab - 1)]
        if not np.isfinite(own_loss[live]).all():  # a candidate subset left the state's own id out
          own_loss = np.asarray(self.own_loss(self.recon_state, clips, ids, jnp.int32(ti), jnp.int32(s),
                                              jnp.asarray(np.minimum(own, self.vocab - 1)[:, None])))[:, 0]
        picks[live, ti, s] = pick[live]
        losses[live, ti, s] = own_loss[live]
        ids[live, ti, s] = own[live]
        chosen[rows[live], own[live]] = True
    return picks, losses


def uniform_budgets(rng, clips: int, frames: int, vocab: int, ratio_range) -> np.ndarray:
  """Per clip and frame (clips, frames): one ratio r ~ U[lo, hi] per clip for all of its frames,
  int(r * V) tokens, at least 1. Labels at every per-frame budget a held-out evaluation measures,
  each with prior frames gazed at that same budget."""
  lo, hi = _ratio_range(ratio_range)
  r = rng.uniform(lo, hi, size=(clips, 1))
  return np.broadcast_to(np.maximum((r * vocab).astype(np.int64), 1), (clips, frames)).copy()


def _ratio_range(ratio_range) -> tuple[float, float]:
  lo, hi = (float(x) for x in ratio_range)
  if not 0 < lo <= hi <= 1:
    raise ValueError(f"label.ratio_range: need 0 < lo <= hi <= 1, got {tuple(ratio_range)}")
  return lo, hi


def dirichlet_budgets(rng, clips: int, frames: int, vocab: int, alpha_first: float, alpha_rest: float,
                      ratio_range) -> np.ndarray:
  """The paper's label budgets (its Appendix B), per clip and frame (clips, frames): a clip's
  average ratio r is drawn between ratio_range's ends as lo * (hi / lo) ** u, u ~ U[0, 1] (our
  reading of "an exponential on [lo, hi]"), split over frames by Dirichlet(alpha_first,
  alpha_rest, ..., alpha_rest) shares: frame ratio = share * r * T, clamped to [0, 1]; tokens
  int(ratio * V), at least 1 (the official NTP validation's formula)."""
  lo, hi = _ratio_range(ratio_range)
  r = lo * (hi / lo) ** rng.uniform(size=(clips, 1))
  shares = rng.dirichlet([alpha_first] + [alpha_rest] * (frames - 1), size=clips)
  ratio = np.clip(shares * r * frames, 0.0, 1.0)
  return np.maximum((ratio * vocab).astype(np.int64), 1)


def label_clips(search: GreedySearch, clips, batch_size: int, progress: bool = True, total: int | None = None,
                budgets=None, candidates: bool = False) -> dict:
  """clips: iterable of (key, uint8 (T, H, W, 3)) -> {key: label entry}, with a progress bar.
  budgets(call, batch) -> (batch, T) per-clip budgets (default: the search's own);
  candidates: entries carry every step's candidate losses (`GreedySearch.__call__`)."""
  from tqdm import tqdm

  out, keys, batch = {}, [], []
  bar = tqdm(total=total, desc="label", unit="clip", disable=not progress, dynamic_ncols=True)

  def flush():
    per_clip = None if budgets is None else budgets(len(out), len(batch))
    for k, entry in zip(keys, search(np.stack(batch), call=len(out), budgets=per_clip,
                                               candidates=candidates)):
      out[k] = entry
    bar.update(len(batch))
    keys.clear(), batch.clear()

  for k, clip in clips:
    keys.append(k)
    batch.append(np.asarray(clip, np.uint8))
    if len(batch) == batch_size:
      flush()
  if batch:
    flush()
  bar.close()
  return out


def summary(entries: dict, eps: float, vocab: int) -> dict:
  """Mean label length per frame, gaze ratio, and how often ε was reached."""
  lens = np.array([[len(fr) for fr in e["gazing_pos"]] for e in entries.values()])
  last = np.array([[fr[-1] for fr in e["task_losses"]] for e in entries.values()])
  return {"clips": len(entries), "mean_gazes_per_frame": lens.mean(0).round(2).tolist(),
          "gaze_ratio": float(lens.mean() / vocab), "frames_reaching_eps": float((last <= eps).mean()),
          "mean_final_loss": float(last.mean())}


def source_clips(data_cfg, count: int | None, seed: int = 0, indices=None, source=None):
  """Yields (key, uint8 clip (T, S, S, 3)) of the first `count` clips of the training source
  of `data_cfg` (seeded by `seed`; or of `source`; or those at `indices`, count None), keyed
  as the NTP stage's data source keys them, center crops as labels describe; an unusable
  video is logged and skipped (strict: raises)."""
  from autogaze_jax import video as video_lib
  from autogaze_jax.data import loading, pipeline

  source = pipeline.make_source(data_cfg, "train", seed) if source is None else source
  load = loading.LoadClip(source, np.arange(len(source)), data_cfg.image_size, "center",
                          clip_len=data_cfg.clip_len)
  if (count is None) == (indices is None):
    raise ValueError("label: source_clips needs a count or indices, not both")
  for i in (range(min(count, len(source))) if indices is None else indices):
    i = int(i)
    try:
      clip = load.load(i, np.random.default_rng(i))
    except video_lib.VideoError as e:
      if data_cfg.strict:
        raise ValueError(f"label (data.strict): unusable video {e}") from None
      log.warning("label: skipping %s (%s)", e.path, e.reason)
      continue
    yield source.key(i), clip


def run(cfg, out_path: str, clips=None, progress: bool = True) -> dict:
  """Labels clips with the oracle's reconstructor (L1 only) and writes `gazing_labels.json`.

  cfg: an NTP config (configs/ntp.py): clip_len, image_size, seed, data, oracle, label.*.
  clips: iterable of (key, uint8 clip (T, H, W, 3)); default the first cfg.label.num_clips
  clips of `pipeline.make_source(cfg.data, "train", cfg.seed)`, keyed by `source.key(i)`,
  the keys the NTP stage joins its labels on.
  """
  from autogaze_jax import mesh as mesh_lib
  from autogaze_jax import vocab as vocab_lib
  from autogaze_jax.data import labels, pipeline
  from autogaze_jax.train import oracle

  labels.check_output(out_path)  # before any work
  lc = cfg.label
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  recon = oracle.load_reconstructor(cfg.oracle.model, mesh, workdir=cfg.oracle.workdir, weights=cfg.oracle.weights)
  vocab = sum(recon_config.tokens_per_scale(recon.cfg))
  t = cfg.clip_len
  mode = lc.get("budget", "fixed")
  if mode not in BUDGET_MODES:
    raise ValueError(f"label.budget: {mode!r} is not one of {', '.join(BUDGET_MODES)}")
  per_clip = None
  if mode == "fixed":
    budgets = vocab_lib.budgets_from_ratio([lc.budget_ratio_first] + [lc.budget_ratio] * (t - 1), t, vocab)
  else:  # a per-clip draw under a cap: every token (dirichlet) or the range's top (uniform)
    rng = np.random.default_rng(cfg.seed)
    if mode == "dirichlet":
      budgets = np.full((t,), vocab, np.int32)
      per_clip = lambda call, n: dirichlet_budgets(rng, n, t, vocab, *lc.dirichlet_alpha, lc.ratio_range)
    else:
      budgets = np.full((t,), min(vocab, max(1, int(_ratio_range(lc.ratio_range)[1] * vocab))), np.int32)
      per_clip = lambda call, n: np.minimum(uniform_budgets(rng, n, t, vocab, lc.ratio_range), budgets)
  search = GreedySearch(recon, budgets, lc.eps, num_candidates=lc.num_candidates or None, chunk=lc.chunk,
                        seed=cfg.seed)
  total = None
  if clips is None:
    clips = source_clips(pipeline.for_training(cfg), lc.num_clips, cfg.seed)
    total = lc.num_clips
  with mesh_lib.use(mesh):
    entries = label_clips(search, clips, lc.batch_size, progress, total, budgets=per_clip,
                          candidates=bool(lc.get("candidate_losses", False)))
  if not entries:
    raise ValueError("label: no usable clips to label")
  labels.write(out_path, entries)
  return dict(summary(entries, lc.eps, vocab), budgets=budgets.tolist(), out=out_path)
