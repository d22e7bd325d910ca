"""Saving and restoring train states with orbax, with the config and data normalisation.

One checkpoint directory holds numbered steps; each step has three items:
  state          step, params, opt_state, ema_params of the TrainState (orbax StandardSave)
  config         JSON: the resolved model config, the diffusion config and the full config
  normalization  the dataset's feature mean and std (263,), so samples can be denormalised

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written "latest" checkpoint. Restoring into a model whose
architecture differs from the saved one is refused with a CheckpointError naming the field.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from selfconsume.errors import CheckpointError
from selfconsume.models import mdm

# Diffusion settings a trained denoiser is tied to.
DIFFUSION_FIELDS = ("schedule", "num_steps", "prediction")


def _state_arrays(state) -> dict[str, Any]:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "ema_params": state.ema_params}


def _jsonable(config: ml_collections.ConfigDict | Mapping[str, Any]) -> Any:
  d = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  return json.loads(json.dumps(d, default=str))


def describe(config: ml_collections.ConfigDict, vocab_size: int) -> dict[str, Any]:
  """What a checkpoint records about the model: the fields that must match on restore."""
  model = mdm.resolved_model_config(config.model, vocab_size)
  return {"model": {k: model[k] for k in mdm.ARCHITECTURE_FIELDS},
          "diffusion": {k: config.diffusion.get(k, "x0" if k == "prediction" else None)
                        for k in DIFFUSION_FIELDS}}


def brief(error: BaseException, limit: int = 200) -> str:
  """One line of an orbax / TensorStore error, whose text can be a 60-line spec dump."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else type(error).__name__
  text = text.split(" See full TensorStore details")[0]
  return text if len(text) <= limit else text[:limit] + " ..."


def first_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
  """'section.field: checkpoint has X, config has Y' for the first differing field, or None."""
  for section in ("model", "diffusion"):
    a, b = saved.get(section, {}), current.get(section, {})
    for field in sorted(set(a) | set(b)):
      if a.get(field) != b.get(field):
        return (f"{section}.{field}: the checkpoint has {a.get(field)!r}, the config has "
                f"{b.get(field)!r}")
  return None


class Checkpointer:
  """Numbered checkpoints of one training run in `directory`.

  Args:
    directory: where the step directories live (created if missing).
    config: the run's config (sections model, diffusion, ...).
    vocab_size: the word vocabulary size the model was built with.
    normalization: optional {'mean': (263,), 'std': (263,)} saved with every step.
    max_to_keep: keep only the newest this many steps (None or <= 0 keeps all).
  """

  def __init__(self, directory: str | os.PathLike, config: ml_collections.ConfigDict,
               vocab_size: int, *, normalization: Mapping[str, np.ndarray] | None = None,
               max_to_keep: int | None = None):
    self.directory = os.path.abspath(os.fspath(directory))
    self.config = config
    self.vocab_size = vocab_size
    self.normalization = (None if normalization is None else
                          {k: np.asarray(v, np.float32) for k, v in normalization.items()})
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep if max_to_keep and max_to_keep > 0 else None,
            create=True, enable_async_checkpointing=False),
        item_names=("state", "config", "normalization"))

  def latest_step(self) -> int | None:
    """The newest complete step, or None when the directory holds no checkpoint."""
    self._manager.reload()
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    self._manager.reload()
    return list(self._manager.all_steps())

  def save(self, state, *, force: bool = True) -> int:
    """Saves `state` (a train.TrainState) at its step; returns the step."""
    step = int(jax.device_get(state.step))
    meta = {"describe": describe(self.config, self.vocab_size),
            "config": _jsonable(self.config), "vocab_size": int(self.vocab_size)}
    items = {"state": ocp.args.StandardSave(_state_arrays(state)),
             "config": ocp.args.JsonSave(meta)}
    if self.normalization is not None:
      items["normalization"] = ocp.args.StandardSave(self.normalization)
    self._manager.save(step, args=ocp.args.Composite(**items), force=force)
    self._manager.wait_until_finished()
    return step

  def saved_config(self, step: int | None = None) -> dict[str, Any]:
    """The JSON metadata saved at `step` (default latest): describe, config, vocab_size."""
    step = self._resolve(step)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises several types for missing/corrupt items
      raise CheckpointError(f"{self.directory}: cannot read the config of step {step} "
                            f"(truncated or corrupt?): {brief(e)}") from e
    return out["config"]

  def restore(self, state, step: int | None = None):
    """Restores the arrays of `step` (default latest) into a TrainState shaped like `state`.

    `state` is a freshly created TrainState for the current config (it supplies the model,
    optimizer and array structure). Raises CheckpointError when there is no checkpoint, it
    is unreadable, or the saved model/diffusion config differs from the current one.
    """
    step = self._resolve(step)
    meta = self.saved_config(step)
    diff = first_difference(meta.get("describe", {}), describe(self.config, self.vocab_size))
    if diff is not None:
      raise CheckpointError(f"{self.directory}: step {step} was written with an incompatible "
                            f"config: {diff}")
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_state_arrays(state))))
    except Exception as e:  # orbax raises several types for missing/corrupt items
      raise CheckpointError(f"{self.directory}: cannot restore the train state of step "
                            f"{step} (truncated or corrupt?): {brief(e)}") from e
    arrays = out["state"]
    return state.replace(step=arrays["step"], params=arrays["params"],
                         opt_state=arrays["opt_state"], ema_params=arrays["ema_params"])

  def restore_normalization(self, step: int | None = None) -> dict[str, np.ndarray]:
    """The {'mean', 'std'} saved at `step` (default latest)."""
    step = self._resolve(step)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(
          normalization=ocp.args.StandardRestore()))
    except Exception as e:  # orbax raises several types for missing/corrupt items
      raise CheckpointError(f"{self.directory}: step {step} has no readable normalization: "
                            f"{brief(e)}") from e
    return {k: np.asarray(v) for k, v in out["normalization"].items()}

  def close(self) -> None:
    self._manager.close()

  def _resolve(self, step: int | None) -> int:
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"{self.directory}: no checkpoint found")
    elif step not in self.all_steps():
      raise CheckpointError(f"{self.directory}: no checkpoint at step {step}; saved steps: "
                            f"{self.all_steps()}")
    return step
