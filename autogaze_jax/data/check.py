"""`autogaze-jax data check DIR`: which videos under DIR give a training clip, and why the
others do not. Usable files that needed fixing on the way (grayscale, odd sizes, rotation
metadata, short or truncated files that get edge-padded) are listed with a note."""

from __future__ import annotations

import os

from tqdm import tqdm

from autogaze_jax.data import clip_reader, sources


def _notes(info: dict, clip, clip_len: int) -> list[str]:
  notes = []
  if info["pix_fmt"] and info["pix_fmt"].startswith(("gray", "ya")):
    notes.append(f"grayscale ({info['pix_fmt']}), converted to RGB")
  if info["width"] % 2 or info["height"] % 2:
    notes.append(f"odd size {info['width']}x{info['height']}")
  if clip.shape[1:3] != (info["height"], info["width"]):
    notes.append(f"rotation metadata: stored {info['width']}x{info['height']}, used upright "
                 f"{clip.shape[2]}x{clip.shape[1]}")
  if 0 < info["frames"] < clip_len:
    notes.append(f"only {info['frames']} frames, last one repeated")
  return notes


def check(root: str, clip_len: int = 16, min_frames: int = 1, progress: bool = True) -> dict:
  """{"usable": [(path, notes)], "unusable": [(path, reason)]} for every video file under root
  (recursively; files with other extensions are ignored)."""
  if not os.path.isdir(root):
    raise ValueError(f"data check: {root} is not a directory")
  usable, unusable = [], []
  for path in tqdm(sources.list_videos(root), desc="check", disable=not progress, dynamic_ncols=True):
    try:
      info = clip_reader.probe(path)
      clip = clip_reader.read_clip(path, clip_len, 1, None, min_frames)
      usable.append((path, _notes(info, clip, clip_len)))
    except clip_reader.ClipError as e:
      unusable.append((path, e.reason))
  return {"usable": usable, "unusable": unusable}


def format_report(result: dict, root: str) -> str:
  lines = []
  for path, notes in result["usable"]:
    lines.append(f"ok    {os.path.relpath(path, root)}" + (f"  ({'; '.join(notes)})" if notes else ""))
  for path, reason in result["unusable"]:
    lines.append(f"BAD   {os.path.relpath(path, root)}: {reason}")
  lines.append(f"{len(result['usable'])} usable, {len(result['unusable'])} unusable")
  return "\n".join(lines)
