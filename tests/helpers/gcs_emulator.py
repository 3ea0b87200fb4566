"""A local Cloud Storage endpoint for tests: gcp-storage-emulator (in memory), with the two
things TensorStore (and so Orbax) relies on added: the object generation in an
`x-goog-generation` header on reads, and the `ifGenerationMatch` / `ifGenerationNotMatch`
preconditions on reads and uploads (OCDBT commits its manifest with them)."""

from __future__ import annotations

import socket
from http import HTTPStatus

from gcp_storage_emulator import server as server_lib
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def _generation(storage, bucket: str, name: str) -> str:
  """The current generation, "0" when the object does not exist (the GCS convention)."""
  try:
    return str(storage.get_file_obj(bucket, name)["generation"])
  except NotFound:
    return "0"


def _precondition_failed(query: dict, current: str) -> int | None:
  match, not_match = query.get("ifGenerationMatch"), query.get("ifGenerationNotMatch")
  if match and match[0] != current:
    return HTTPStatus.PRECONDITION_FAILED
  if not_match and not_match[0] == current:
    return HTTPStatus.NOT_MODIFIED
  return None


def _download(request, response, storage, *args, **kwargs):
  bucket, name = request.params["bucket_name"], request.params["object_id"]
  current = _generation(storage, bucket, name)
  status = _precondition_failed(request.query, current) if current != "0" else None
  if status is not None:
    response.status = status
    response["x-goog-generation"] = current
    return None
  if current != "0":
    response["x-goog-generation"] = current
  return _ORIGINAL["download"](request, response, storage, *args, **kwargs)


def _insert(request, response, storage, *args, **kwargs):
  name = request.query.get("name", [None])[0]
  if name is not None:
    current = _generation(storage, request.params["bucket_name"], name)
    if request.query.get("ifGenerationMatch", [current])[0] != current:
      response.status = HTTPStatus.PRECONDITION_FAILED
      return None
  return _ORIGINAL["insert"](request, response, storage, *args, **kwargs)


_ORIGINAL = {"download": objects.download, "insert": objects.insert}
_PATCHED = {objects.download: _download, objects.insert: _insert}


def _patch_routes() -> None:
  objects.download = _download  # objects.get calls it for alt=media
  for _, methods in server_lib.HANDLERS:
    for method, fn in methods.items():
      methods[method] = _PATCHED.get(fn, fn)


def start(bucket: str):
  """(server, "http://127.0.0.1:PORT") serving one empty in-memory bucket."""
  _patch_routes()
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = server_lib.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
  server.start()
  return server, f"http://127.0.0.1:{port}"
