"""The one config-file loader of the CLI, the benchmarks and the tests.

A config file is a Python file with `get_config(arg)` returning an ml_collections
ConfigDict; `path/to/file.py:variant` calls it with the variant. The file's own folder is on
sys.path while it runs, so the files of `configs/` share `configs/common.py` with a plain
`import common`. Overrides `--config.a.b=value` must name an existing field and keep its type.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys


def load(spec: str):
  """`path/to/file.py[:variant]` -> the file's get_config(variant)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--config: {path} does not exist")
  folder = os.path.dirname(os.path.abspath(path))
  before = sys.modules.pop("common", None)  # another folder's (or program's) `common` is not reused
  sys.path.insert(0, folder)
  try:
    mod_spec = importlib.util.spec_from_file_location("_autogaze_config", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
  finally:
    sys.path.remove(folder)
    sys.modules.pop("common", None)
    if before is not None:  # and whatever `common` the program had is given back
      sys.modules["common"] = before
  if not hasattr(mod, "get_config"):
    raise ValueError(f"--config: {path} defines no get_config()")
  return mod.get_config(arg) if arg else mod.get_config()


def apply_overrides(cfg, overrides: list[str]):
  """`--config.a.b=value` overrides; the value is parsed as a Python literal when it can be,
  and must keep the field's type. Unknown fields raise (typos never pass silently)."""
  for item in overrides:
    if not item.startswith("--config.") or "=" not in item:
      raise ValueError(f"unrecognised argument {item!r} (overrides look like --config.steps=100)")
    key, _, text = item[len("--config.") :].partition("=")
    node, *path = key.split(".")
    parent, name = cfg, node
    for part in path:
      if name not in parent:
        raise ValueError(f"config: no field {key!r}")
      parent, name = parent[name], part
    if name not in parent:
      raise ValueError(f"config: no field {key!r}")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    old = parent[name]
    if old is not None and isinstance(value, bool) != isinstance(old, bool):  # bool is an int in Python
      raise ValueError(f"config: {key} must be {type(old).__name__}, got {text!r}")
    if isinstance(old, float) and isinstance(value, int):
      value = float(value)
    if old is not None and not isinstance(value, type(old)):
      raise ValueError(f"config: {key} must be {type(old).__name__}, got {text!r}")
    parent[name] = value
  return cfg


def main_job_configs(config_dir: str, workdir: str, seed: int = 0) -> dict:
  """The tiny configs of the main job's three training stages, from `config_dir`, wired to
  each other inside `workdir` (`main_job.wire`)."""
  from autogaze_jax.train import main_job

  if not os.path.isdir(config_dir):
    raise ValueError(f"--configs: {config_dir} is not a directory (run from the repository root)")
  recon, ntp, grpo = (load(os.path.join(config_dir, f"{name}.py:tiny")) for name in ("recon", "ntp", "grpo"))
  return main_job.wire(recon, ntp, grpo, workdir, seed)
