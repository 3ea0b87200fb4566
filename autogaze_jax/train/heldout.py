"""Every policy's loss-vs-ratio curves on the same held-out clips: the numbers the main job's
report is made of.

A curve is the frozen reconstructor's loss (mean over the evaluated frames) at each budget of
an ascending grid of per-frame gaze counts, one row per clip (N, n budgets). The policies:
- a gaze model, decoding greedily exactly n gazes per frame (no task-loss stop);
- random gazes: n distinct uniformly random tokens per frame;
- the greedy oracle: the labeller's search (`labelling.GreedySearch`) run to exactly n gazes
  per frame with no ε stop, i.e. the best-first choices the NTP labels are made of, frame by
  frame, at every budget of the grid up to a ratio cap, and beyond it for the clips that have
  not reached ε yet. It is the ceiling the policies are measured against.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from autogaze_jax import image as image_lib
from autogaze_jax import mesh as mesh_lib
from autogaze_jax.models import recon_config
from autogaze_jax.train import evals, labelling, task


def ids_from_entries(entries: list[dict], frames: int, slots: int, vocab: int) -> np.ndarray:
  """Label entries (global ids per frame) -> local ids (N, T, slots), PAD = vocab."""
  ids = np.full((len(entries), frames, slots), vocab, np.int32)
  for i, entry in enumerate(entries):
    for t, picks in enumerate(entry["gazing_pos"]):
      ids[i, t, : len(picks)] = np.asarray(picks, np.int64) - t * vocab
  return ids


class Curves:
  """The held-out clips, the frozen reconstructor and the budget grid, put on one device once;
  each method returns (N, n budgets) float64 losses of one policy on every clip."""

  def __init__(self, recon, mesh, clips_u8: np.ndarray, ratios, frames):
    self.vocab = int(sum(recon_config.tokens_per_scale(recon.cfg)))
    self.budgets = evals.budget_grid(ratios, self.vocab)
    self.ratios = [n / self.vocab for n in self.budgets]
    self.clips = np.asarray(clips_u8)
    self.frames = tuple(int(f) for f in frames if f < self.clips.shape[1])
    self.recon, self.mesh = recon, mesh
    self._recon_def, recon_state = nnx.split(recon)
    repl = mesh_lib.replicated(mesh)
    self._args = jax.device_put((recon_state, self.clips), repl)
    self._compiled = {}
    self._score = jax.jit(self._score_ids)  # one program per gaze-set shape, reused across calls

  def _recon_video(self, recon_state, clips):
    return nnx.merge(self._recon_def, recon_state), image_lib.normalize_on_device(clips)

  def policy(self, model) -> np.ndarray:
    """Policies of one architecture share one compiled program."""
    graphdef, state = nnx.split(model)
    if graphdef not in self._compiled:
      frames = jnp.asarray(self.frames, jnp.int32)

      @jax.jit
      def run(state, recon_state, clips):
        recon, video = self._recon_video(recon_state, clips)
        return evals.policy_losses(nnx.merge(graphdef, state), recon, video, frames, self.budgets)[0]

      self._compiled[graphdef] = run
    with mesh_lib.use(self.mesh):
      return np.asarray(jax.device_get(self._compiled[graphdef](state, *self._args)), np.float64)

  def random(self, seed: int = 0) -> np.ndarray:
    frames = jnp.asarray(self.frames, jnp.int32)

    @jax.jit
    def run(recon_state, clips):
      recon, video = self._recon_video(recon_state, clips)
      return evals.random_losses(recon, video, frames, self.budgets, self.vocab, jax.random.key(seed))

    with mesh_lib.use(self.mesh):
      return np.asarray(jax.device_get(run(*self._args)), np.float64)

  def gaze_ids(self, ids_ntg: np.ndarray, which=None) -> np.ndarray:
    """(N,) the loss of given local ids (N, T, G) on the evaluated frames, of the clips
    `which` (indices; default all)."""
    recon_state, clips = self._args
    if which is not None:
      clips = jax.device_put(self.clips[np.asarray(which)], mesh_lib.replicated(self.mesh))
    with mesh_lib.use(self.mesh):
      return np.asarray(jax.device_get(self._score(recon_state, clips, jnp.asarray(ids_ntg))), np.float64)

  def _score_ids(self, recon_state, clips, ids):
    recon, video = self._recon_video(recon_state, clips)
    lens = jnp.full(ids.shape[:2], ids.shape[2], jnp.int32)
    frames = jnp.asarray(self.frames, jnp.int32)
    return task.evaluate(recon, video, ids, lens, frames)["loss_each_frame"].mean(-1)

  def oracle(self, *, num_candidates: int = 0, chunk: int = 16, batch_size: int = 32, seed: int = 0,
             keep: int | None = None, eps: float | None = None, max_ratio: float = 1.0, progress=None):
    """The greedy search's curves, and its local ids (T, n) of the first clip at budget `keep`
    (None if not asked). The search costs far more than decoding (every candidate of every
    step is one reconstruction), so past `max_ratio` only the clips that have not yet reached
    `eps` are searched; the others' losses there are NaN (not measured; their ratio at eps is
    already fixed; with every candidate scored, num_candidates=0, it equals searching them
    all). progress(done, total) is called after every budget."""
    t, count = self.clips.shape[1], len(self.clips)
    # every clip up to the first budget at or past the cap (and the first two), so the loss at
    # the cap and the area up to it are measured for all
    full = max(1, next((j for j, n in enumerate(self.budgets) if n / self.vocab >= max_ratio - 1e-9),
                       len(self.budgets)))
    out, kept = [], None
    for j, n in enumerate(self.budgets):
      todo = np.arange(count)
      if j > full:
        reached = (np.stack(out, 1) <= eps).any(1) if (out and eps is not None) else np.zeros(count, bool)
        todo = np.flatnonzero(~reached) if eps is not None else todo[:0]
      row = np.full(count, np.nan)
      if todo.size:
        search = labelling.GreedySearch(self.recon, [n] * t, -np.inf, num_candidates=num_candidates or None,
                                        chunk=chunk, seed=seed)
        entries = []
        with mesh_lib.use(self.mesh):
          for start in range(0, todo.size, batch_size):
            entries += search(self.clips[todo[start : start + batch_size]], call=start)
        ids = ids_from_entries(entries, t, n, self.vocab)
        row[todo] = self.gaze_ids(ids, None if todo.size == count else todo)
        if n == keep and todo[0] == 0:
          kept = ids[0]
      out.append(row)
      if progress is not None:
        progress(j + 1, len(self.budgets))
    return np.stack(out, 1), kept
