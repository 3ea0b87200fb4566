"""`autogaze-jax reconstruct`: a frozen reconstructor rebuilds chosen frames of a task video
from given gazes (the official `gazing_pos` / `if_padded_gazing` / `num_gazing_each_frame`),
with each frame's loss, and a picture of what it saw and what it made."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, ImageDraw

from autogaze_jax import image as image_lib
from autogaze_jax import pictures
from autogaze_jax import vocab as vocab_lib
from autogaze_jax.inference import outputs
from autogaze_jax.models import recon_config
from autogaze_jax.train import task

GAZE_KEYS = ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")


def read_gazes(path: str) -> dict:
  """The official gaze arrays of an .npz (as `autogaze-jax gaze --out` writes them)."""
  try:
    data = np.load(path)
  except (OSError, EOFError, ValueError) as e:
    raise ValueError(f"--gazes: cannot read {path}: {e}") from None
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise ValueError(f"--gazes: {path} is not an .npz archive of named arrays")
  with data:
    missing = [k for k in GAZE_KEYS if k not in data]
    if missing:
      raise ValueError(f"--gazes: {path} lacks {', '.join(missing)} (keys: {sorted(data.keys())})")
    return {k: np.asarray(data[k]) for k in GAZE_KEYS}


def parse_frames(text: str, num_frames: int) -> np.ndarray:
  """'all' -> 0..T-1; 'i,j,...' -> those frames in that order (distinct, each in [0, T))."""
  if text == "all":
    return np.arange(num_frames, dtype=np.int32)
  try:
    frames = [int(x) for x in text.split(",")]
  except ValueError:
    raise ValueError(f"--frames: {text!r} is not 'all' or comma-separated frame indices") from None
  bad = [f for f in frames if not 0 <= f < num_frames]
  if bad:
    raise ValueError(f"--frames: frame {bad[0]} is outside the video's {num_frames} frames")
  if len(set(frames)) != len(frames):
    raise ValueError(f"--frames: {text!r} repeats a frame")
  return np.asarray(frames, np.int32)


_JITTED = {}  # id(model) -> (model, its jitted evaluation)


def _jitted(model):
  """One jitted evaluation per reconstructor; the weights are an argument (not constants baked
  into the program), so repeated calls on new clips reuse the compile."""
  if id(model) not in _JITTED:
    graphdef = nnx.graphdef(model)
    _JITTED[id(model)] = (model, jax.jit(lambda state, *a: task.evaluate(nnx.merge(graphdef, state), *a)))
  return _JITTED[id(model)][1]


def reconstruct(model, video_bt3hw, gazes: dict, frames) -> dict:
  """Reconstruction (B, F, 3, S, S), loss_each_frame (B, F) and the fixed-shape gazes of the
  frames `frames`, in the order given."""
  vocab = sum(recon_config.tokens_per_scale(model.cfg))
  b, t = video_bt3hw.shape[:2]
  pos = np.asarray(gazes["gazing_pos"])
  if pos.ndim != 2 or pos.shape[0] != b or len(gazes["num_gazing_each_frame"]) != t:
    raise ValueError(f"--gazes: gazes for {pos.shape[0] if pos.ndim == 2 else '?'} clips x "
                     f"{len(gazes['num_gazing_each_frame'])} frames, the video is {b} x {t}")
  ids, lens = outputs.from_official(pos, gazes["if_padded_gazing"], gazes["num_gazing_each_frame"], vocab, 1)
  out = _jitted(model)(nnx.state(model), jnp.asarray(video_bt3hw, jnp.float32), jnp.asarray(ids), jnp.asarray(lens),
                          jnp.asarray(frames))
  return {"reconstruction": np.asarray(out["reconstruction"]), "loss_each_frame": np.asarray(out["loss_each_frame"]),
          "frame_idx": np.asarray(frames), "ids": ids}


def picture(video_t3hw, ids_tg, frames, recon_f3hw, losses_f, scales, vocab: int) -> Image.Image:
  """Three rows for the chosen frames: the frame, its gazed patches per scale, the reconstruction."""
  size = 224
  frames = list(np.asarray(frames))
  originals = image_lib.to_display_uint8(np.asarray(video_t3hw)[frames])
  masks = [m[0][frames] for m in vocab_lib.gazing_masks(np.asarray(ids_tg)[None], scales, vocab)]
  gazed = pictures.gaze_picture(originals, masks, size=size, per_row=len(frames))
  recon = image_lib.to_display_uint8(np.asarray(recon_f3hw))
  pad = 18
  canvas = Image.new("RGB", (len(frames) * size, gazed.height + 2 * (size + pad)), (16, 16, 16))
  draw = ImageDraw.Draw(canvas)
  for i, f in enumerate(frames):
    x = i * size
    canvas.paste(Image.fromarray(originals[i]).resize((size, size), Image.BILINEAR), (x, pad))
    draw.text((x + 4, 3), f"frame {f}", fill=(230, 230, 230))
    y = pad + size + gazed.height
    canvas.paste(Image.fromarray(recon[i]).resize((size, size), Image.BILINEAR), (x, y + pad))
    draw.text((x + 4, y + 3), f"reconstruction, loss {float(losses_f[i]):.3f}", fill=(230, 230, 230))
  canvas.paste(gazed, (0, pad + size))
  return canvas
