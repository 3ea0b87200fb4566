"""Where outputs live: local paths and object-store URLs (gs://...) behind one path type.

Workdirs, checkpoints, labels, metrics, reports and pictures all go through `path()`, an
`etils.epath.Path`. A local path is made absolute (Orbax wants that); a URL is kept as it is
and read and written through fsspec (gcsfs for gs://). Orbax writes the arrays themselves
through TensorStore, which speaks gs:// natively, so a training run needs no mounted bucket.
"""

from __future__ import annotations

import glob as glob_lib
import io
import json
import os
from collections.abc import Callable

from etils import epath


def is_url(p) -> bool:
  return "://" in str(p)


def path(p) -> epath.Path:
  """(`os.path.join` composes URLs correctly; `os.path.abspath` and `open` do not.)"""
  s = os.fspath(p)
  return epath.Path(s) if is_url(s) else epath.Path(os.path.abspath(s))


def exists(p) -> bool:
  return path(p).exists()


def glob(pattern: str) -> list[str]:
  """Sorted matches of a pattern; in a URL the wildcards may only be in the file name."""
  if not is_url(pattern):
    return sorted(glob_lib.glob(pattern))
  parent, name = pattern.rsplit("/", 1)
  if glob_lib.has_magic(parent):
    raise ValueError(f"{pattern}: in a URL, wildcards may only be in the last path component")
  return sorted(str(p) for p in path(parent).glob(name))


def has_magic(pattern: str) -> bool:
  return glob_lib.has_magic(pattern)


def is_dir(p) -> bool:
  return path(p).is_dir()


def makedirs(p) -> None:
  path(p).mkdir(parents=True, exist_ok=True)


def _for_writing(p) -> epath.Path:
  """The path, with its parent folders made when local (object stores have no folders)."""
  target = path(p)
  if not is_url(p):
    target.parent.mkdir(parents=True, exist_ok=True)
  return target


def read_json(p):
  return json.loads(path(p).read_text())


def write_text(p, text: str) -> None:
  _for_writing(p).write_text(text)


def write_json(p, obj, indent: int = 2) -> None:
  write_text(p, json.dumps(obj, indent=indent))


def append_text(p, text: str) -> None:
  """Appends to a text file. Object stores cannot append, so there the file is rewritten
  (logs are small and written every few steps)."""
  target = _for_writing(p)
  if not is_url(p):
    with target.open("a") as f:
      f.write(text)
    return
  old = target.read_text() if target.exists() else ""
  target.write_text(old + text)


def write_image(p, save: Callable) -> None:
  """`save(file_object)` writes the encoded image (PIL's `image.save(f, format="PNG")`,
  matplotlib's `fig.savefig(f, format="png")`); the bytes land at `p`, local or remote."""
  buf = io.BytesIO()
  save(buf)
  _for_writing(p).write_bytes(buf.getvalue())
