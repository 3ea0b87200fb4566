"""Checkpoints by Hugging Face hub id (`nvidia/AutoGaze`, `bfshi/AutoGaze`): `config.json` +
`model.safetensors` through huggingface_hub (an optional dependency), from the network when it
is reachable and from the local hub cache otherwise (HF_HUB_OFFLINE=1 never asks the network).
"""

from __future__ import annotations

import os
import re

FILES = ("config.json", "model.safetensors")
_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(path: str) -> bool:
  """`owner/name` that is not a local path."""
  return bool(_ID.fullmatch(str(path))) and not os.path.exists(path)


def fetch(repo_id: str) -> str:
  """The local folder (a hub-cache snapshot) holding the checkpoint's files."""
  where = (f"download {' and '.join(FILES)} from https://huggingface.co/{repo_id} into a folder "
           "and pass that folder instead")
  try:
    import huggingface_hub
    from huggingface_hub import errors
  except ImportError:
    raise ValueError(f"checkpoint {repo_id!r}: loading by hub id needs huggingface_hub "
                     f"(pip install huggingface_hub); or {where}") from None
  paths = []
  for name in FILES:
    try:
      paths.append(huggingface_hub.hf_hub_download(repo_id, name))
    except errors.LocalEntryNotFoundError as e:  # offline or unreachable, and not cached
      raise ValueError(_unreachable(repo_id, name, e, where)) from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError, errors.EntryNotFoundError) as e:
      raise ValueError(f"checkpoint {repo_id!r}: no such local path, and the hub answered that {name} is not "
                       f"available there ({type(e).__name__}: the id is wrong, private or gated); {where}") from None
    except (errors.HfHubHTTPError, OSError) as e:
      raise ValueError(_unreachable(repo_id, name, e, where)) from None
  return os.path.dirname(paths[-1])


def _unreachable(repo_id: str, name: str, error: Exception, where: str) -> str:
  return (f"checkpoint {repo_id!r}: no such local path, and as a hub id its {name} is neither reachable nor in "
          f"the local hub cache ({type(error).__name__}); {where}")
