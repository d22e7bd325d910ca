"""Writing results into a workdir: atomic JSON files and append-only JSONL metric rows.

Every file a run writes goes through here so that a crash never leaves a half-written
summary behind (write to a temporary file in the same directory, then rename).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from typing import Any, Iterable, Mapping

import numpy as np


def to_jsonable(value: Any) -> Any:
  """Converts numpy / jax scalars and arrays into plain Python values for json."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
    return to_jsonable(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None if math.isnan(value) else (math.inf if value > 0 else -math.inf)
  return value


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` so that readers see either the old or the new file."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    # mkstemp creates the file readable by its owner only; give it the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str | os.PathLike, data: Any) -> None:
  """Atomically writes `data` as indented JSON."""
  write_text_atomic(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
  with open(path) as f:
    return json.load(f)


def append_jsonl(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
  """Appends one JSON object per line; each line is written and flushed whole."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    for row in rows:
      f.write(json.dumps(to_jsonable(row)) + "\n")
    f.flush()
    os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads JSONL rows; a torn last line (crash mid-write) is ignored."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows


class _DropLibraryInfo(logging.Filter):
  """Drops records below WARNING logged from the source files of the given packages."""

  def __init__(self, packages: Iterable[str]):
    super().__init__()
    self._parts = tuple(f"{os.sep}{p}{os.sep}" for p in packages)

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not any(
        part in (record.pathname or "") for part in self._parts)


# Libraries whose INFO lines crowd the console (orbax logs ~10 lines per checkpoint through
# absl logging; jax and MuJoCo XLA announce their backends and devices); their warnings and
# errors still show.
QUIET_PACKAGES = ("orbax", "jax", "matplotlib", "mujoco", "brax")
# The deprecation notice brax's MJCF loader raises on every load (the corrector uses brax
# only to load the humanoid; the simulation is MuJoCo XLA).
_BRAX_NOTICE = r"Brax System, piplines and environments are not actively being maintained"


def quiet_console(packages: Iterable[str] = QUIET_PACKAGES) -> None:
  """Turns off library INFO logs and brax's deprecation warning; idempotent.

  The filter sits on absl's logger (orbax logs through absl) and on the root logger's
  handlers (jax logs through its own loggers, which propagate there; absl's app.run installs
  its handler before main runs), so records from `packages` below WARNING are dropped.
  """
  for target in [logging.getLogger("absl")] + list(logging.getLogger().handlers):
    if not any(isinstance(f, _DropLibraryInfo) for f in target.filters):
      target.addFilter(_DropLibraryInfo(packages))
  warnings.filterwarnings("ignore", message=_BRAX_NOTICE, category=UserWarning,
                          module=r"brax\.io\.mjcf")
