"""Training curves and reconstruction pictures as PNG files (matplotlib, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from autogaze_jax import preprocessing, storage  # noqa: E402


def save(fig, path: str, dpi=None) -> None:
  """Writes the figure as a PNG at `path` (local or gs://) and closes it."""
  storage.write_image(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
  plt.close(fig)


def curves(path: str, rows: list[dict], keys: list[str], title: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
  for k in keys:
    pts = [(r["step"], r[k]) for r in rows if k in r]
    if pts:
      s, v = zip(*pts)
      ax.plot(s, v, marker="o" if len(pts) < 30 else None, label=k)
  ax.set_xlabel("step")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  save(fig, path)


def reconstructions(path: str, targets, preds, title: str) -> None:
  """Rows: targets, predictions; each (R, 3, H, W) in task space."""
  r = len(targets)
  fig, axes = plt.subplots(2, r, figsize=(2 * r, 4.2), dpi=100, squeeze=False)
  for i in range(r):
    for row, src in enumerate((targets, preds)):
      axes[row, i].imshow(preprocessing.to_display_uint8(src[i]))
      axes[row, i].axis("off")
  axes[0, 0].set_title("target", fontsize=8, loc="left")
  axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  save(fig, path)
