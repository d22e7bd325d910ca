"""A run directory is a contract: one config and one dataset per workdir, one process at a time.

  with workdir.claim(path, config, dataset=workdir.humanml_dataset(config)):
    ...  # everything the run writes

`claim` checks, before anything is written:

  the path      a directory, or one that can be made (not a file, not under a file, not
                read-only);
  the identity  on first start `identity.json` records the run's result-relevant config
                fields (every field except those of NON_RESULT_FIELDS) and a signature of its
                dataset; a rerun continues only when both match, and otherwise stops with a
                one-line WorkdirError naming what differs;
  the lock      `run.lock` holds the PID and host of the process at work; a second process is
                refused with a message naming them. The lock is a kernel flock on that file,
                so it ends with its process: the lock file of a killed run is taken over.

Then it records the identity (first start only) and holds the lock until the block ends.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import math
import os
import socket
from typing import Any, Iterator, Mapping

import ml_collections

from selfconsume import outputs
from selfconsume import validation
from selfconsume.data import procedural
from selfconsume.data import subsets
from selfconsume.errors import ConfigError
from selfconsume.errors import DataError

IDENTITY_FILE = "identity.json"
LOCK_FILE = "run.lock"

# Fields that cannot change a run's results, per experiment: output and progress options,
# where the data are read from (the data themselves are compared by their signature), and
# how far the run goes (a rerun with more generations or seeds continues it; rows already
# written do not depend on it), and whether a generation runs as one program or in stages
# (the same computation). A name covers its whole group ('outputs' = outputs.*).
# Every other field, including fields added to a config later, is result-relevant.
NON_RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "humanml": ("preset", "outputs", "train.log_every", "train.checkpoint_every",
                "data.root", "data.corpus_dir", "data.subset_ids", "eval.evaluator_cache",
                "loop.generations", "loop.fused"),
    "mnist": ("preset", "num_seeds", "loop.num_generations", "eval.grid_per_class",
              "data.path"),
    "gaussian": ("preset",),
    "evaluator": ("preset", "cache_dir", "data.root", "data.corpus_dir"),
}

# The attribute `claim` sets on an exception that leaves its block: the absolute workdir.
_STARTED_IN = "selfconsume_workdir_started_in"
# Locks this process holds: absolute workdir -> the open lock file's descriptor.
_HELD: dict[str, int] = {}


class WorkdirError(ConfigError):
  """The workdir cannot be used by this run: another config's or dataset's, in use, or not
  a writable directory. Nothing was written."""


# ----------------------------------------------------------------------------- identity


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for name in config.keys():
    value = config[name]
    path = f"{prefix}{name}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      flat.update(_flatten(value, path + "."))
    else:
      flat[path] = value
  return flat


def _covered(path: str, names: tuple[str, ...]) -> bool:
  return any(path == name or path.startswith(name + ".") for name in names)


def _plain(value: Any) -> Any:
  """JSON's view of a value (tuples -> lists, inf kept), so recorded and current compare."""
  return json.loads(json.dumps(outputs.to_jsonable(value)))


def result_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config's result-relevant fields, flattened: {'train.batch_size': 8, ...}."""
  skip = NON_RESULT_FIELDS.get(config.get("experiment"), ("preset",))
  return {path: _plain(value) for path, value in sorted(_flatten(config).items())
          if not _covered(path, skip)}


def identity(config: ml_collections.ConfigDict,
             dataset: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """What identity.json records: experiment, result-relevant fields, dataset signature."""
  fields = result_fields(config)
  text = json.dumps(fields, sort_keys=True)
  return {"experiment": config.get("experiment"),
          "config_fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16],
          "config": fields,
          "dataset": None if dataset is None else _plain(dict(dataset)),
          "non_result_fields": list(NON_RESULT_FIELDS.get(config.get("experiment"),
                                                          ("preset",)))}


def read_identity(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, IDENTITY_FILE)
  if not os.path.exists(path):
    return None
  try:
    recorded = outputs.read_json(path)
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} is unreadable ({e}); it records which config made this "
                       "run, so it cannot be checked: use another --workdir") from None
  if not isinstance(recorded, dict) or not isinstance(recorded.get("config"), dict):
    raise WorkdirError(f"{path} is not an identity file of selfconsume; use another "
                       "--workdir")
  return recorded


def _show(value: Any) -> str:
  if isinstance(value, float) and math.isinf(value):
    return "inf" if value > 0 else "-inf"
  if isinstance(value, list):
    return "(" + ", ".join(_show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value)


def config_differences(recorded: Mapping[str, Any], current: Mapping[str, Any],
                       only_common: bool = False) -> list[str]:
  """'config.seed is 0 there, 7 here' for every result-relevant field that differs."""
  out = []
  for path in sorted(set(recorded) | set(current)):
    if only_common and (path not in recorded or path not in current):
      continue
    if path not in recorded:
      out.append(f"config.{path} is absent there, {_show(current[path])} here")
    elif path not in current:
      out.append(f"config.{path} is {_show(recorded[path])} there, absent here")
    elif recorded[path] != current[path]:
      out.append(f"config.{path} is {_show(recorded[path])} there, {_show(current[path])} here")
  return out


def _describe_dataset(dataset: Mapping[str, Any]) -> str:
  if dataset.get("source") == "procedural":
    return f"the procedural corpus (version {dataset.get('version')})"
  if dataset.get("source") == "directory":
    return f"the directory {dataset.get('location')!r}"
  if dataset.get("source") == "sklearn":
    return "scikit-learn's digits"
  if dataset.get("source") == "mnist":
    return f"the MNIST files at {dataset.get('location')!r}"
  return repr(dict(dataset))


def dataset_difference(recorded: Mapping[str, Any] | None,
                       current: Mapping[str, Any] | None) -> str | None:
  """What differs between two dataset signatures (their 'location' is not compared)."""
  if recorded is None or current is None:
    return None
  if recorded.get("source") != current.get("source"):
    return (f"the run read {_describe_dataset(recorded)}, this command reads "
            f"{_describe_dataset(current)}")
  if recorded.get("version") != current.get("version"):
    return (f"the run used procedural corpus version {recorded.get('version')}, this code "
            f"builds version {current.get('version')}")
  if recorded.get("files") != current.get("files"):
    return (f"{current.get('location')!r} holds other data than the run's "
            f"{recorded.get('location')!r} ({current.get('compared', 'its files')} differ)")
  if recorded.get("subset_ids") != current.get("subset_ids"):
    return "config.data.subset_ids lists other training motions than the run's"
  for key in sorted(set(recorded) | set(current)):
    if key not in ("location", "compared") and recorded.get(key) != current.get(key):
      return f"dataset {key} is {recorded.get(key)!r} there, {current.get(key)!r} here"
  return None


def _refuse_identity(workdir: str, problems: list[str], what: str = "config") -> None:
  shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3
                                     else "")
  raise WorkdirError(f"{workdir} holds a run of a different {what}: {shown}. Rerun with the "
                     "run's settings, or use another --workdir")


def check_identity(workdir: str, expected: Mapping[str, Any]) -> bool:
  """Compares the workdir's recorded identity with `expected`.

  Returns True when one is recorded and matches, False when none is recorded (a first
  start, or a workdir of an older version whose config matches); raises WorkdirError
  naming the differing fields otherwise.
  """
  recorded = read_identity(workdir)
  if recorded is None:
    legacy = _legacy_config(workdir, expected.get("experiment"))
    if legacy is not None:
      fake = ml_collections.ConfigDict(legacy)
      problems = config_differences(result_fields(fake), expected["config"], only_common=True)
      if problems:
        _refuse_identity(workdir, problems)
    return False
  if recorded.get("experiment") != expected.get("experiment"):
    raise WorkdirError(f"{workdir} holds a run of experiment {recorded.get('experiment')!r}, "
                       f"not {expected.get('experiment')!r}; use another --workdir")
  problems = config_differences(recorded["config"], expected["config"])
  if problems:
    _refuse_identity(workdir, problems)
  difference = dataset_difference(recorded.get("dataset"), expected.get("dataset"))
  if difference:
    _refuse_identity(workdir, [difference], "dataset")
  return True


def _legacy_config(workdir: str, experiment: str | None) -> dict[str, Any] | None:
  """The config a workdir written before identity.json existed was run with, if any."""
  for name in ("config.json", "summary.json"):
    path = os.path.join(workdir, name)
    try:
      data = outputs.read_json(path)
    except (OSError, ValueError):
      continue
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
      data = data["config"]
    if isinstance(data, dict) and data.get("experiment") == experiment:
      return data
  return None


def check_dataset_record(workdir: str, name: str, recorded: Mapping[str, Any],
                         current: Mapping[str, Any], keys: tuple[str, ...]) -> None:
  """Raises WorkdirError when the fingerprints `keys` of a dataset record differ.

  For records written after loading the data (e.g. dataset.json: the content fingerprint
  of the splits), which the cheap signature of `claim` cannot see.
  """
  for key in keys:
    if key in recorded and recorded[key] != current.get(key):
      raise WorkdirError(
          f"{workdir} holds a run of a different dataset: {key} is {recorded[key]!r} in its "
          f"{name} (read from {recorded.get('root', '?')!r}), {current.get(key)!r} for "
          f"{current.get('root', '?')!r}. Rerun with the run's data, or use another --workdir")


# ----------------------------------------------------------------------------- datasets


def _sha_of_files(paths: list[str]) -> str:
  h = hashlib.sha256()
  for path in paths:
    h.update(os.path.basename(path).encode() + b"\0")
    if os.path.isfile(path):
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
    else:
      h.update(b"<missing>")
    h.update(b"\0")
  return h.hexdigest()[:16]


def _ids_sha(spec: str) -> str | None:
  """A hash of the ids a subset spec ('paper:64' or a file) names; None if unreadable."""
  try:
    ids = subsets.read_subset_ids(spec)
  except DataError:
    return None
  return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def humanml_dataset(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A cheap signature of the motion data a config reads (no motion file is opened).

  A directory (config.data.root) is known by its split lists and Mean.npy / Std.npy, which
  differ between any two datasets; the procedural corpus by its version (its size and
  seed are config fields). The full content fingerprint is checked once the data are
  loaded (selfconsume.humanml.data.write_run_files).
  """
  data = config.data
  if data.root:
    signature = {"source": "directory", "location": os.path.abspath(data.root),
                 "compared": "split lists or Mean.npy / Std.npy",
                 "files": _sha_of_files([os.path.join(data.root, name) for name in (
                     "train.txt", "val.txt", "test.txt", "Mean.npy", "Std.npy")])}
  else:
    signature = {"source": "procedural", "version": procedural.CORPUS_VERSION}
  if data.get("subset_ids"):
    signature["subset_ids"] = _ids_sha(data.subset_ids)
  return signature


def mnist_dataset(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The digits toy's data: scikit-learn's bundled set, or the MNIST files' contents."""
  if config.data.source != "mnist":
    return {"source": config.data.source}
  path = config.data.path
  if os.path.isdir(path):
    files = sorted(os.path.join(path, name) for name in os.listdir(path)
                   if os.path.isfile(os.path.join(path, name)))
  else:
    files = [path]
  return {"source": "mnist", "location": os.path.abspath(path), "compared": "its files",
          "files": _sha_of_files(files)}


# ----------------------------------------------------------------------------- the lock


def _lock_owner(path: str) -> str:
  try:
    with open(path) as f:
      owner = json.load(f)
    return (f"process {owner['pid']} on {owner['host']} (since {owner.get('started', '?')}; "
            f"lock file {path})")
  except (OSError, ValueError, KeyError, TypeError):
    return f"another process (lock file {path})"


def acquire_lock(workdir: str) -> int:
  """Takes `workdir`/run.lock for this process; returns its descriptor.

  Raises WorkdirError naming the owner when a live process holds it. A lock file left by
  a dead process is taken over: the kernel released its flock when it died.
  """
  path = os.path.join(workdir, LOCK_FILE)
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f"{workdir}: cannot create the lock file {path}: {e.strerror}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise WorkdirError(f"{workdir}: cannot lock {path}: {e.strerror}") from None
      raise WorkdirError(f"{workdir} is in use by {_lock_owner(path)}; wait for it to finish, "
                         "or use another --workdir") from None
    # Its previous holder deletes the file when it finishes: locking a deleted file would
    # not exclude a process that creates a new one, so lock the file at the path.
    try:
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same = False
    if not same:
      os.close(fd)
      continue
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
    os.fsync(fd)
    return fd


def release_lock(workdir: str, fd: int) -> None:
  """Deletes the lock file (still holding it, so no one else's is deleted), then unlocks."""
  try:
    os.remove(os.path.join(workdir, LOCK_FILE))
  except OSError:
    pass
  os.close(fd)


# ----------------------------------------------------------------------------- claim


def check_path(workdir: str) -> None:
  """A directory that exists and is writable, or can be made; writes nothing."""
  validation.check_output_dir(workdir, "--workdir", WorkdirError)


@contextlib.contextmanager
def claim(workdir: str, config: ml_collections.ConfigDict,
          dataset: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
  """Checks the path, the identity and the lock, records the identity; yields it.

  Raises WorkdirError, having written nothing, when the workdir is not usable, holds a run
  of another config or dataset, or another process works in it. Nested claims of one
  workdir by one process only check the identity.
  """
  check_path(workdir)
  expected = identity(config, dataset)
  check_identity(workdir, expected)
  key = os.path.abspath(workdir)
  if key in _HELD:
    yield expected
    return
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir!r} cannot be created: {e.strerror}") from None
  fd = acquire_lock(workdir)
  _HELD[key] = fd
  try:
    # Checked again under the lock: a process that held it may have recorded one.
    if not check_identity(workdir, expected):
      record = dict(expected, created=datetime.datetime.now().isoformat(timespec="seconds"),
                    host=socket.gethostname())
      outputs.write_json(os.path.join(workdir, IDENTITY_FILE), record)
    try:
      yield expected
    except BaseException as error:
      # The run had started here: its error log may go here (experiments.run). Tagging the
      # error rather than remembering the workdir keeps a later refused command in the same
      # process (a notebook, a test) from writing into the workdir of an earlier run.
      if started_in(error) is None:
        setattr(error, _STARTED_IN, key)
      raise
  finally:
    del _HELD[key]
    release_lock(workdir, fd)


def started_in(error: BaseException) -> str | None:
  """The workdir (absolute path) whose claimed block `error` left, if any: the run had
  started there when the error happened, so its log may be written there."""
  return getattr(error, _STARTED_IN, None)


def report_finished(workdir: str, detail: str, results: tuple[str, ...]) -> dict[str, Any]:
  """Says that the run in `workdir` is finished and where its results are; returns its
  summary.json (empty when there is none)."""
  where = ", ".join(os.path.join(workdir, name) for name in results
                    if os.path.exists(os.path.join(workdir, name)))
  print(f"{workdir}: this run is finished ({detail}); nothing to do. Results: {where}",
        flush=True)
  path = os.path.join(workdir, "summary.json")
  return outputs.read_json(path) if os.path.exists(path) else {}
