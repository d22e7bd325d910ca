"""One checkpoint format for every model: orbax, any pytree, and the fingerprint it was written with.

A checkpoint directory holds numbered steps; each step has up to three items:
  state          the pytree's arrays (orbax StandardSave)
  config         JSON {"describe": FINGERPRINT, **EXTRA}: the fingerprint must match on restore
                 (an architecture, a config hash, a data fingerprint), the extra keys are free
                 metadata (a generation's metrics, an evaluator's vocabulary, ...)
  normalization  optional {'mean', 'std'} arrays (MDM train states: to denormalise samples)
The item names and the "describe" key are those of the MDM train-state checkpoints written
before this module was made generic, so those still restore.

Its users:
  MDM train states    `humanml.training.Checkpointer(directory, config, vocab_size)`, a
                      StepCheckpointer: steps are optimizer steps, the fingerprint is
                      `humanml.mdm.checkpoint_fingerprint`
  digits loop states  experiments/mnist.py through `save` / `restore`: step = generation,
                      fingerprint = the run's config hash
  motion evaluator    selfconsume/humanml/evaluator.py through `save` / `restore`: one step,
                      fingerprint = cache version and data fingerprint

Atomicity: orbax writes a step into `STEP.orbax-checkpoint-tmp` and renames it when complete,
and deletes older steps (max_to_keep) only after that, so a crash mid-save leaves the previous
step readable. `save` into a directory that does not exist yet builds it beside and renames
it: such a directory exists only once it holds a complete step.

Every failure is a CheckpointError of one line that names the directory: no checkpoint, a
truncated or corrupt one, or the first fingerprint field that differs ("model.latent_dim:
checkpoint has 32, config has 64").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from selfconsume import outputs
from selfconsume.errors import CheckpointError

STATE, META, NORMALIZATION = "state", "config", "normalization"
_ITEMS = (STATE, META, NORMALIZATION)
# Key of the fingerprint in the META item (the name MDM checkpoints have always used).
FINGERPRINT_KEY = "describe"


def brief(error: BaseException, limit: int = 200) -> str:
  """One line of an orbax / TensorStore error, whose text can be a 60-line spec dump."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else type(error).__name__
  text = text.split(" See full TensorStore details")[0]
  return text if len(text) <= limit else text[:limit] + " ..."


def _plain(value: Any) -> Any:
  """`value` as it reads back from JSON (tuples as lists, numpy scalars as numbers, ...)."""
  def default(obj: Any) -> Any:
    if isinstance(obj, ml_collections.ConfigDict):  # at any depth, e.g. extra={'config': ...}
      return outputs.to_jsonable(obj.to_dict())
    return str(obj)
  return json.loads(json.dumps(outputs.to_jsonable(value), default=default))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, Mapping) or not tree:
    return {prefix.rstrip("."): tree} if prefix else {}
  out: dict[str, Any] = {}
  for key, value in tree.items():
    out.update(_flatten(value, f"{prefix}{key}."))
  return out


def first_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
  """'field: checkpoint has X, config has Y' for the first differing field, or None.

  Nested fields are dotted ('model.latent_dim'); they are visited in the order of `current`
  (then those only `saved` has), so the message names the field its writer thinks of first.
  """
  a, b = _flatten(_plain(saved)), _flatten(_plain(current))
  for field in list(b) + [f for f in a if f not in b]:
    if a.get(field) != b.get(field):
      return f"{field}: checkpoint has {a.get(field)!r}, config has {b.get(field)!r}"
  return None


# ----------------------------------------------------------------------------- steps


def _manager(directory: str, max_to_keep: int | None = None, *, create: bool = True
             ) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep if max_to_keep and max_to_keep > 0 else None,
          create=create, enable_async_checkpointing=False),
      item_names=_ITEMS)


def _meta(fingerprint: Mapping[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
  extra = dict(extra or {})
  if FINGERPRINT_KEY in extra:
    raise ValueError(f"extra may not have a {FINGERPRINT_KEY!r} key: it holds the fingerprint")
  return {FINGERPRINT_KEY: _plain(fingerprint), **_plain(extra)}


def _is_empty(leaf: Any) -> bool:
  return hasattr(leaf, "shape") and getattr(leaf, "size", None) == 0


def _drop_empty(tree: Any) -> Any:
  # orbax refuses arrays of size zero (the digits baseline's synthetic buffer has no slots);
  # they hold no values, so they are saved as None and rebuilt from the template's shape.
  return jax.tree.map(lambda leaf: None if _is_empty(leaf) else leaf, tree)


def _refill_empty(template: Any, restored: Any) -> Any:
  def refill(leaf: Any, value: Any) -> Any:
    if not _is_empty(leaf):
      return value
    return leaf if isinstance(leaf, (np.ndarray, jax.Array)) else np.zeros(leaf.shape,
                                                                             leaf.dtype)
  return jax.tree.map(refill, template, restored)


def _write(manager: ocp.CheckpointManager, step: int, tree: Any, meta: dict[str, Any],
           normalization: Mapping[str, np.ndarray] | None = None, *, force: bool = True
           ) -> None:
  items = {STATE: ocp.args.StandardSave(_drop_empty(tree)), META: ocp.args.JsonSave(meta)}
  if normalization is not None:
    items[NORMALIZATION] = ocp.args.StandardSave(dict(normalization))
  manager.save(step, args=ocp.args.Composite(**items), force=force)
  manager.wait_until_finished()


def _resolve(manager: ocp.CheckpointManager, directory: str, step: int | None) -> int:
  manager.reload()
  steps = list(manager.all_steps())
  if step is None:
    if not steps:
      raise CheckpointError(f"{directory}: no checkpoint found")
    return max(steps)
  if step not in steps:
    raise CheckpointError(f"{directory}: no checkpoint at step {step}; saved steps: "
                          f"{sorted(steps)}")
  return step


def _read_meta(manager: ocp.CheckpointManager, directory: str, step: int) -> dict[str, Any]:
  try:
    out = manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))
  except Exception as e:  # orbax raises several types for missing/corrupt items
    raise CheckpointError(f"{directory}: cannot read the metadata of step {step} "
                          f"(truncated or corrupt?): {brief(e)}") from e
  meta = out[META]
  if not isinstance(meta, dict):
    raise CheckpointError(f"{directory}: the metadata of step {step} is not a JSON object "
                          "(truncated or corrupt?)")
  return meta


def _restore_state(manager: ocp.CheckpointManager, directory: str, step: int, template: Any,
                   fingerprint: Mapping[str, Any]) -> Any:
  diff = first_difference(_read_meta(manager, directory, step).get(FINGERPRINT_KEY, {}),
                          fingerprint)
  if diff is not None:
    raise CheckpointError(f"{directory}: step {step} was written for another config: {diff}")
  restore = (ocp.args.StandardRestore() if template is None
             else ocp.args.StandardRestore(_drop_empty(template)))
  try:
    out = manager.restore(step, args=ocp.args.Composite(**{STATE: restore}))
  except Exception as e:  # orbax raises several types for missing/corrupt items
    raise CheckpointError(f"{directory}: cannot restore the arrays of step {step} "
                          f"(truncated or corrupt?): {brief(e)}") from e
  return out[STATE] if template is None else _refill_empty(template, out[STATE])


@contextlib.contextmanager
def _reading(directory: str | os.PathLike, step: int | None
             ) -> Iterator[tuple[ocp.CheckpointManager, str, int]]:
  """(manager, absolute directory, resolved step) of an existing checkpoint; creates nothing."""
  directory = os.path.abspath(os.fspath(directory))
  if not os.path.isdir(directory):
    raise CheckpointError(f"{directory}: no checkpoint found")
  manager = _manager(directory, create=False)
  try:
    yield manager, directory, _resolve(manager, directory, step)
  finally:
    manager.close()


# ----------------------------------------------------------------------------- one-shot use


def latest_step(directory: str | os.PathLike) -> int | None:
  """The newest complete step in `directory`, or None (also when it does not exist)."""
  directory = os.path.abspath(os.fspath(directory))
  if not os.path.isdir(directory):
    return None
  manager = _manager(directory, create=False)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def save(directory: str | os.PathLike, tree: Any, fingerprint: Mapping[str, Any],
         extra: Mapping[str, Any] | None = None, *, step: int | None = None,
         max_to_keep: int | None = 1) -> int:
  """Saves `tree` as a new step of `directory`, atomically; returns the step.

  Args:
    directory: the checkpoint directory (created if missing).
    tree: any pytree of arrays and scalars.
    fingerprint: JSON-able mapping that `restore` must be given again to read this step.
    extra: JSON-able metadata read back by `read_meta`.
    step: the step number (default: one after the newest, 0 in a new directory); it must be
      after the newest, which older steps are deleted in favour of.
    max_to_keep: keep only the newest this many steps (None or <= 0 keeps all).
  """
  directory = os.path.abspath(os.fspath(directory))
  meta = _meta(fingerprint, extra)
  if os.path.isdir(directory):
    manager = _manager(directory, max_to_keep)
    try:
      latest = manager.latest_step()
      if step is None:
        step = 0 if latest is None else latest + 1
      elif latest is not None and step <= latest:
        # orbax would keep the newest steps by number and so delete the one just written.
        raise CheckpointError(f"{directory}: cannot save step {step}, step {latest} is newer")
      _write(manager, step, tree, meta)
    finally:
      manager.close()
    return step
  step = 0 if step is None else step
  parent, name = os.path.split(directory)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
  try:
    manager = _manager(tmp, max_to_keep)
    try:
      _write(manager, step, tree, meta)
    finally:
      manager.close()
    try:
      os.rename(tmp, directory)
    except OSError:
      # Another process saved there first: its checkpoint stands and ours is dropped.
      if latest_step(directory) is None:
        raise
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return step


def restore(directory: str | os.PathLike, template: Any, fingerprint: Mapping[str, Any], *,
            step: int | None = None) -> Any:
  """The tree saved at `step` (default newest) of `directory`.

  Args:
    template: a tree of the saved structure whose arrays give shapes, dtypes and shardings
      (its values are not used), or None for the tree as saved (numpy arrays stay numpy;
      arrays of size zero, which orbax cannot write, come back as None).
    fingerprint: must equal the one the step was written with.

  Raises:
    CheckpointError (one line): no checkpoint, another fingerprint (the first differing
    field), or unreadable arrays.
  """
  with _reading(directory, step) as (manager, directory, step):
    return _restore_state(manager, directory, step, template, fingerprint)


def read_meta(directory: str | os.PathLike, step: int | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(fingerprint, extra) saved at `step` (default newest) of `directory`."""
  with _reading(directory, step) as (manager, directory, step):
    meta = _read_meta(manager, directory, step)
  fingerprint = meta.pop(FINGERPRINT_KEY, {})
  return fingerprint, meta


# ----------------------------------------------------------------------------- a training run


class StepCheckpointer:
  """Numbered checkpoints of one training run in `directory`, kept open between saves.

  Args:
    directory: where the step directories live (created if missing).
    fingerprint: what every step records and `restore` requires (see `restore`).
    extra: JSON-able metadata saved with every step.
    normalization: optional {'mean', 'std'} arrays saved with every step.
    max_to_keep: keep only the newest this many steps (None or <= 0 keeps all).
  """

  def __init__(self, directory: str | os.PathLike, fingerprint: Mapping[str, Any], *,
               extra: Mapping[str, Any] | None = None,
               normalization: Mapping[str, np.ndarray] | None = None,
               max_to_keep: int | None = None):
    self.directory = os.path.abspath(os.fspath(directory))
    self.fingerprint = _plain(fingerprint)
    self.extra = _plain(dict(extra or {}))
    self.normalization = (None if normalization is None else
                          {k: np.asarray(v, np.float32) for k, v in normalization.items()})
    self._manager = _manager(self.directory, max_to_keep)

  def latest_step(self) -> int | None:
    """The newest complete step, or None when the directory holds no checkpoint."""
    self._manager.reload()
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    self._manager.reload()
    return list(self._manager.all_steps())

  def save(self, state: Any, *, force: bool = True) -> int:
    """Saves `state` (a pytree with an integer `step`, e.g. a TrainState) at its step."""
    step = int(jax.device_get(state.step))
    _write(self._manager, step, self._tree(state), _meta(self.fingerprint, self.extra),
           self.normalization, force=force)
    return step

  def saved_config(self, step: int | None = None) -> dict[str, Any]:
    """The JSON metadata saved at `step` (default newest): 'describe' and the extra keys."""
    return _read_meta(self._manager, self.directory, self._resolve(step))

  def restore(self, state: Any, step: int | None = None) -> Any:
    """The arrays of `step` (default newest) restored into a tree shaped like `state`.

    `state` is freshly created for the current config (it supplies the structure, and for a
    TrainState the model and optimizer). Raises a one-line CheckpointError when there is no
    checkpoint, it is unreadable, or it was written with another fingerprint.
    """
    step = self._resolve(step)
    return self._untree(state, _restore_state(self._manager, self.directory, step,
                                              self._tree(state), self.fingerprint))

  def restore_normalization(self, step: int | None = None) -> dict[str, np.ndarray]:
    """The {'mean', 'std'} saved at `step` (default newest)."""
    step = self._resolve(step)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(
          **{NORMALIZATION: ocp.args.StandardRestore()}))
    except Exception as e:  # orbax raises several types for missing/corrupt items
      raise CheckpointError(f"{self.directory}: step {step} has no readable normalization: "
                            f"{brief(e)}") from e
    return {k: np.asarray(v) for k, v in out[NORMALIZATION].items()}

  def close(self) -> None:
    self._manager.close()

  def _resolve(self, step: int | None) -> int:
    return _resolve(self._manager, self.directory, step)

  def _tree(self, state: Any) -> Any:
    """The arrays of `state` that are saved (all of it here; see Checkpointer)."""
    return state

  def _untree(self, state: Any, arrays: Any) -> Any:
    """`state` with the restored `arrays` (the inverse of `_tree`)."""
    del state
    return arrays
