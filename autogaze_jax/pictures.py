"""Training curves and reconstruction pictures as PNG files (matplotlib, no display).

Pictures of gazes: each frame dimmed, with the gazed multi-scale patches lit and outlined.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

from autogaze_jax import image as image_lib
from autogaze_jax import storage


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
      axes[row, i].imshow(image_lib.to_display_uint8(src[i]))
      axes[row, i].axis("off")
  axes[0, 0].set_title("target", fontsize=8, loc="left")
  axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  save(fig, path)


# One outline colour per scale, coarse to fine.
_COLOURS = [(255, 64, 64), (255, 196, 0), (64, 200, 255), (120, 255, 120), (255, 128, 255)]


def gaze_picture(frames_thwc: np.ndarray, masks: list[np.ndarray], size: int = 224,
                 per_row: int = 8) -> Image.Image:
  """frames: uint8 (T, H, W, 3); masks: per scale (T, n_s) 0/1 of one clip."""
  t = frames_thwc.shape[0]
  rows = -(-t // per_row)
  pad = 18
  canvas = Image.new("RGB", (per_row * size, rows * (size + pad)), (16, 16, 16))
  draw = ImageDraw.Draw(canvas)
  for i in range(t):
    img = Image.fromarray(frames_thwc[i]).resize((size, size), Image.BILINEAR)
    base = np.asarray(img).astype(np.float32)
    lit = np.zeros(base.shape[:2], bool)
    boxes = []
    for s, m in enumerate(masks):
      g = int(round(m.shape[-1] ** 0.5))
      cell = size / g
      for idx in np.flatnonzero(m[i]):
        r, c = divmod(int(idx), g)
        y0, x0 = int(r * cell), int(c * cell)
        y1, x1 = int((r + 1) * cell), int((c + 1) * cell)
        lit[y0:y1, x0:x1] = True
        boxes.append((s, (x0, y0, x1 - 1, y1 - 1)))
    shown = np.where(lit[..., None], base, base * 0.3).astype(np.uint8)
    tile = Image.fromarray(shown)
    tdraw = ImageDraw.Draw(tile)
    for s, box in boxes:
      tdraw.rectangle(box, outline=_COLOURS[s % len(_COLOURS)])
    x, y = (i % per_row) * size, (i // per_row) * (size + pad)
    canvas.paste(tile, (x, y + pad))
    n = int(sum(m[i].sum() for m in masks))
    draw.text((x + 4, y + 3), f"frame {i}: {n} gazes", fill=(230, 230, 230))
  return canvas


def save_gaze_picture(path: str, frames_thwc, out: dict, clip: int = 0) -> None:
  masks = [np.asarray(m)[clip] for m in out["gazing_mask"]]
  save_picture(path, gaze_picture(np.asarray(frames_thwc), masks))


def save_picture(path: str, image: Image.Image) -> None:
  """A PNG at `path`, local or gs://."""
  storage.write_image(path, lambda f: image.save(f, format="PNG"))
