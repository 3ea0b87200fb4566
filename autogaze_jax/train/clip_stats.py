"""Per-clip summaries of a policy's loss-vs-ratio curves and their uncertainty over clips.

A policy's held-out result is a matrix loss (N clips, n budgets) over an ascending grid of gaze
ratios. Everything reported about it comes from here: the ratio each clip needs to reach ε (the
crossing, interpolated between grid points; 1.0 where no budget reaches), the area under the
clip's loss curve (its mean loss over the grid's ratio range), the loss at fixed ratios, and
95 % percentile-bootstrap intervals over clips (clips are the unit that varies; a paired
interval for a difference of two policies on the same clips). Numpy only.
"""

from __future__ import annotations

import numpy as np


def ratio_at_eps(loss_nb, ratios, eps: float) -> np.ndarray:
  """(N,) the ratio where each clip's loss first reaches eps, interpolated linearly between the
  grid points around the crossing; ratios[0] if the first already reaches, 1.0 if none does."""
  loss, ratios = np.asarray(loss_nb, np.float64), np.asarray(ratios, np.float64)
  reach = loss <= eps
  i = np.argmax(reach, 1)
  j = np.maximum(i - 1, 0)
  rows = np.arange(len(loss))
  hi, lo = loss[rows, j], loss[rows, i]
  frac = np.clip((hi - eps) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)
  crossed = np.where(i == 0, ratios[0], ratios[j] + frac * (ratios[i] - ratios[j]))
  return np.where(reach.any(1), crossed, 1.0)


def area_under_curve(loss_nb, ratios, max_ratio: float = 1.0) -> np.ndarray:
  """(N,) each clip's mean loss over the grid's ratios up to `max_ratio` (at least the first
  two; trapezoids; lower is better)."""
  loss, ratios = np.asarray(loss_nb, np.float64), np.asarray(ratios, np.float64)
  if ratios.size < 2:
    raise ValueError("area_under_curve: the ratio grid needs at least two points")
  keep = max(2, int((ratios <= max_ratio + 1e-9).sum()))
  loss, ratios = loss[:, :keep], ratios[:keep]
  widths = np.diff(ratios)
  return ((loss[:, 1:] + loss[:, :-1]) / 2 * widths).sum(1) / (ratios[-1] - ratios[0])


def loss_at(loss_nb, ratios, ratio: float) -> np.ndarray:
  """(N,) each clip's loss at `ratio`, interpolated linearly on the grid (clamped at its ends)."""
  return np.array([np.interp(ratio, ratios, row) for row in np.asarray(loss_nb, np.float64)])


def bootstrap_interval(values, *, stat=np.mean, level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of `stat` over the values' resampled (with replacement) sets."""
  values = np.asarray(values, np.float64).ravel()
  if values.size == 0:
    raise ValueError("bootstrap_interval: no values")
  if not 0 < level < 1:
    raise ValueError(f"bootstrap_interval: level must be in (0, 1), got {level}")
  rng = np.random.default_rng(seed)
  draws = values[rng.integers(0, values.size, (resamples, values.size))]
  stats = stat(draws, axis=1)
  tail = (1 - level) / 2 * 100
  lo, hi = np.percentile(stats, [tail, 100 - tail])
  return float(lo), float(hi)


def paired_difference(a, b, **kw) -> dict:
  """mean(a - b) over the same clips, its bootstrap interval, and whether it excludes 0."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f"paired_difference: {a.size} values against {b.size}; pair them clip by clip")
  d = a - b
  lo, hi = bootstrap_interval(d, **kw)
  return {"mean": float(d.mean()), "ci95": [lo, hi], "excludes_0": bool(lo > 0 or hi < 0), "clips": int(d.size)}


def _finite_or_none(x) -> float | None:
  return float(x) if np.isfinite(x) else None


def summarize(loss_nb, ratios, eps: float, fixed_ratios=(0.1, 0.2, 0.3), auc_max_ratio: float = 0.3) -> dict:
  """The report's row of one policy: ratio to reach eps (mean, median, fraction of clips that
  reach it, bootstrap interval of the mean), area under the curve up to `auc_max_ratio` (mean
  and interval), the mean loss at each fixed ratio, the mean curve with per-budget intervals,
  and the per-clip ratios (for paired tests). NaN losses (budgets not measured, after a clip
  has reached eps) make the numbers that would need them None."""
  loss = np.asarray(loss_nb, np.float64)
  r = ratio_at_eps(loss, ratios, eps)
  auc = area_under_curve(loss, ratios, auc_max_ratio)
  return {
    "ratio_at_eps": float(r.mean()), "ratio_at_eps_median": float(np.median(r)),
    "ratio_at_eps_ci95": list(bootstrap_interval(r)),
    "reach_fraction": float((loss <= eps).any(1).mean()),
    "auc": _finite_or_none(auc.mean()),
    "auc_ci95": list(bootstrap_interval(auc)) if np.isfinite(auc).all() else None,
    **{f"loss_at_{x:g}": _finite_or_none(loss_at(loss, ratios, x).mean()) for x in fixed_ratios},
    "auc_max_ratio": auc_max_ratio,
    "curve": {"ratios": [float(x) for x in ratios], "mean": [_finite_or_none(x) for x in loss.mean(0)],
              "ci95": [list(bootstrap_interval(col)) if np.isfinite(col).all() else None for col in loss.T]},
    "per_clip_ratio": r.tolist(),
  }
