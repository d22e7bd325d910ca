"""Checks of an experiment's config before any work: types, ranges, NaN, cross-field
constraints and paths.

`validate(config, reference)` runs before the corpus, the evaluator or generation 0 are
built, so that a mistake costs a second, not a training run. `reference` is the experiment's
config file at the same preset (`experiments/configs/<experiment>.py:get_config`): every field
must hold what the reference's field holds (an integer, a number, a tuple of numbers, ...),
and no float may be NaN, or infinite unless the reference's value is (`correction.gamma =
inf` corrects every sample). The range rules of the toys follow;
the motion experiments' are in `selfconsume.humanml.checks`. Each error is one line
naming the field and what was expected:

  ConfigError  a config value (type, range, a relation between fields, an unusable path)
  DataError    a dataset file or directory named by the config (missing, unreadable)
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import ml_collections

from selfconsume.diffusion import sampling
from selfconsume.diffusion import schedules
from selfconsume.errors import ConfigError
from selfconsume.errors import DataError

SPLITS = ("train", "val", "test")
VARIANTS = ("baseline", "self_consuming", "self_correcting")


# ----------------------------------------------------------------------------- helpers


def _is_group(value: Any) -> bool:
  return isinstance(value, (ml_collections.ConfigDict, dict))


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node = config
  for name in dotted.split("."):
    node = node[name]
  return node


def has(config: ml_collections.ConfigDict, dotted: str) -> bool:
  node = config
  for name in dotted.split("."):
    if not _is_group(node) or name not in node:
      return False
    node = node[name]
  return True


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe_kind(reference: Any) -> str | None:
  """What a field must hold, judged by its reference value; None when anything goes."""
  if isinstance(reference, bool):
    return "a boolean (True/False)"
  if _is_int(reference):
    return "an integer"
  if isinstance(reference, float):
    return "a number"
  if isinstance(reference, str):
    return "a string"
  if isinstance(reference, (tuple, list)):
    inner = _describe_kind(reference[0]) if reference else None
    if inner is None:
      return "a tuple"
    return "a tuple of " + {"a boolean (True/False)": "booleans", "an integer": "integers",
                            "a number": "numbers", "a string": "strings"}.get(inner, "values")
  return None


def _matches(value: Any, reference: Any) -> bool:
  if isinstance(reference, bool):
    return isinstance(value, bool)
  if _is_int(reference):
    return _is_int(value)
  if isinstance(reference, float):
    return _is_number(value)
  if isinstance(reference, str):
    return isinstance(value, str)
  if isinstance(reference, (tuple, list)):
    if not isinstance(value, (tuple, list)):
      return False
    return not reference or all(_matches(v, reference[0]) for v in value)
  return True


def show(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return "(" + ", ".join(show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value)


def check_types(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                prefix: str = "config") -> None:
  """Every field of `config` holds the kind of value its field in `reference` holds.

  Fields the reference does not have are not checked (ml_collections already refuses
  unknown overrides); a reference value of None accepts anything.
  """
  for name in config.keys():
    if name not in reference:
      continue
    value, ref, path = config[name], reference[name], f"{prefix}.{name}"
    if _is_group(ref):
      if not _is_group(value):
        raise ConfigError(f"{path} must be a group of fields, got {show(value)}")
      check_types(value, ref, path)
      continue
    kind = _describe_kind(ref)
    if kind is not None and not _matches(value, ref):
      raise ConfigError(f"{path} must be {kind}, got {show(value)}")


def check_finite(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict | None,
                 prefix: str = "config") -> None:
  """No float is NaN; none is infinite unless the reference's value is infinite too."""
  for name in config.keys():
    value, path = config[name], f"{prefix}.{name}"
    ref = reference[name] if reference is not None and name in reference else None
    if _is_group(value):
      check_finite(value, ref if _is_group(ref) else None, path)
      continue
    many = isinstance(value, (tuple, list))
    inf_allowed = isinstance(ref, float) and math.isinf(ref)
    for v in value if many else (value,):
      if isinstance(v, float) and math.isnan(v):
        kind = "a tuple of numbers without NaN" if many else "a number"
        raise ConfigError(f"{path} must be {kind}, got {show(value)}")
      if isinstance(v, float) and math.isinf(v) and not inf_allowed:
        raise ConfigError(f"{path} must be finite, got {show(value)}")


def integer(config, field: str, minimum: int | None = None, maximum: int | None = None,
            what: str = "") -> int:
  value = _get(config, field)
  ok = _is_int(value) and (minimum is None or value >= minimum) and (
      maximum is None or value <= maximum)
  if not ok:
    raise ConfigError(f"config.{field} must be an integer{_bounds(minimum, maximum)}{what}, "
                      f"got {show(value)}")
  return value


def number(config, field: str, minimum: float | None = None, maximum: float | None = None,
           *, above: float | None = None, below: float | None = None, what: str = "") -> float:
  value = _get(config, field)
  ok = _is_number(value) and not math.isnan(value)
  if ok:
    ok = ((minimum is None or value >= minimum) and (maximum is None or value <= maximum)
          and (above is None or value > above) and (below is None or value < below))
  if not ok:
    bounds = _bounds(minimum, maximum, above, below)
    raise ConfigError(f"config.{field} must be a number{bounds}{what}, got {show(value)}")
  return float(value)


def _bounds(minimum=None, maximum=None, above=None, below=None) -> str:
  parts = []
  if minimum is not None:
    parts.append(f">= {minimum:g}")
  if above is not None:
    parts.append(f"> {above:g}")
  if maximum is not None:
    parts.append(f"<= {maximum:g}")
  if below is not None:
    parts.append(f"< {below:g}")
  return (" " + " and ".join(parts)) if parts else ""


def integers(config, field: str, minimum: int | None = None, *, non_empty: bool = True
             ) -> tuple[int, ...]:
  values = _get(config, field)
  ok = isinstance(values, (tuple, list)) and (values or not non_empty) and all(
      _is_int(v) and (minimum is None or v >= minimum) for v in values)
  if not ok:
    raise ConfigError(f"config.{field} must be a {'non-empty ' if non_empty else ''}tuple of "
                      f"integers{_bounds(minimum)}, got {show(values)}")
  return tuple(values)


def numbers(config, field: str, minimum: float | None = None, *, above: float | None = None,
            non_empty: bool = True) -> tuple[float, ...]:
  values = _get(config, field)
  ok = isinstance(values, (tuple, list)) and (values or not non_empty) and all(
      _is_number(v) and math.isfinite(v) and (minimum is None or v >= minimum)
      and (above is None or v > above) for v in values)
  if not ok:
    raise ConfigError(f"config.{field} must be a {'non-empty ' if non_empty else ''}tuple of "
                      f"finite numbers{_bounds(minimum, above=above)}, got {show(values)}")
  return tuple(float(v) for v in values)


def choice(config, field: str, choices: Sequence[str]) -> str:
  value = _get(config, field)
  if value not in tuple(choices):
    raise ConfigError(f"config.{field} must be one of {tuple(choices)}, got {show(value)}")
  return value


def choices(config, field: str, choices: Sequence[str]) -> tuple[str, ...]:
  values = _get(config, field)
  if (not isinstance(values, (tuple, list)) or not values
      or any(v not in tuple(choices) for v in values) or len(set(values)) != len(values)):
    raise ConfigError(f"config.{field} must be a non-empty tuple of distinct values from "
                      f"{tuple(choices)}, got {show(values)}")
  return tuple(values)


def gamma(config, field: str) -> float:
  """A correction strength: >= 0, inf allowed (every sample corrected), never NaN."""
  value = _get(config, field)
  if not _is_number(value) or math.isnan(value) or value < 0:
    raise ConfigError(f"config.{field} must be a number >= 0 (inf corrects every "
                      f"sample), got {show(value)}")
  return float(value)


def reraise(section: str, check: Callable[[], Any], library_name: str | None = None) -> Any:
  """Runs a library's own check of a config section, naming the field as the user writes it.

  `library_name` is how the library calls the section in its messages (e.g. 'evaluation'
  for config.eval): 'evaluation.num_samples' becomes 'config.eval.num_samples'.
  """
  try:
    return check()
  except ConfigError as e:
    message = str(e)
    if library_name and f"{library_name}." in message:
      message = message.replace(f"{library_name}.", f"{section}.")
    elif not message.startswith("config."):
      message = f"{section}: {message}"
    raise ConfigError(message) from None


# ----------------------------------------------------------------------------- paths


def _first_existing(path: str) -> str:
  """The path itself or its nearest existing ancestor."""
  path = os.path.abspath(path)
  while not os.path.lexists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def _read_only(path: str) -> bool:
  """True when a directory cannot be written: no permission, or no write bit at all (which
  root would ignore, but a directory made read-only was meant to be)."""
  try:
    mode = os.stat(path).st_mode
  except OSError:
    return True
  return not os.access(path, os.W_OK | os.X_OK) or not mode & 0o222


def check_output_dir(path: str, what: str, error: type[ValueError] = ConfigError) -> None:
  """`path` is a writable directory, or can be made one (its nearest existing ancestor is a
  writable directory). Writes nothing. `what` names the flag or field, e.g. '--workdir'."""
  if not path:
    raise error(f"{what} is empty; expected a directory path")
  full = os.path.abspath(path)
  existing = _first_existing(full)
  if existing == full:
    if not os.path.isdir(full):
      raise error(f"{what}={path!r} is a file, expected a directory")
    if _read_only(full):
      raise error(f"{what}={path!r} is read-only; expected a writable directory")
    return
  if not os.path.isdir(existing):
    raise error(f"{what}={path!r} lies under {existing!r}, which is a file, not a directory")
  if _read_only(existing):
    raise error(f"{what}={path!r} cannot be created: {existing!r} is read-only")


def check_input_dir(path: str, what: str) -> None:
  if not os.path.isdir(path):
    kind = "a file" if os.path.exists(path) else "missing"
    raise DataError(f"{what}={path!r} is {kind}; expected an existing directory")


def check_input_file(path: str, what: str) -> None:
  if not os.path.isfile(path):
    kind = "a directory" if os.path.isdir(path) else "missing"
    raise DataError(f"{what}={path!r} is {kind}; expected an existing file")
  try:
    with open(path, "rb"):
      pass
  except OSError as e:
    raise DataError(f"{what}={path!r} cannot be read: {e.strerror}") from None


# ----------------------------------------------------------------------------- experiments


def gaussian(config: ml_collections.ConfigDict) -> None:
  """The Gaussian toy (experiments/configs/gaussian.py)."""
  integer(config, "seed", 0)
  integer(config, "num_seeds", 1)
  integer(config, "dim", 1)
  integer(config, "num_real", 2, what=" (n: a covariance needs two samples)")
  integer(config, "num_generations", 1)
  number(config, "synthetic_ratio", 0.0, what=" (lambda)")
  numbers(config, "synthetic_ratios", 0.0)
  gammas = _get(config, "gammas")
  if (not isinstance(gammas, (tuple, list)) or not gammas
      or any(not _is_number(g) or not math.isfinite(g) or g < 0 for g in gammas)):
    raise ConfigError(f"config.gammas must be a non-empty tuple of finite numbers >= 0, got "
                      f"{show(gammas)}")
  choice(config, "corrector", ("histogram", "mixture"))
  if config.corrector == "histogram" and config.dim != 2:
    raise ConfigError("config.corrector = 'histogram' uses a 2-D histogram; set config.dim = 2")
  integer(config, "histogram_bins", 1)
  integer(config, "rejection_pool", 1)
  integer(config, "last_window", 1, config.num_generations + 1,
          what=" (at most num_generations + 1)")


def mnist(config: ml_collections.ConfigDict) -> None:
  """The digits toy (experiments/configs/mnist.py)."""
  integer(config, "seed", 0)
  integer(config, "num_seeds", 1)
  source = choice(config, "data.source", ("sklearn", "mnist"))
  if source == "mnist":
    if not config.data.path:
      raise ConfigError("config.data.path is empty; config.data.source = 'mnist' reads the "
                        "IDX files or an .npz from there")
    if not os.path.exists(config.data.path):
      raise DataError(f"config.data.path={config.data.path!r} is missing; expected a "
                      "directory of the four MNIST IDX files or an .npz")
  number(config, "data.test_fraction", above=0.0, below=1.0)
  number(config, "data.train_fraction", above=0.0, maximum=1.0)
  integer(config, "data.pad_to", 0)
  integer(config, "model.features", 1)
  integers(config, "model.multipliers", 1)
  choice(config, "diffusion.schedule", schedules.SCHEDULES)
  diffusion_steps = integer(config, "diffusion.num_steps", 2)
  beta_start = number(config, "diffusion.beta_start", above=0.0, below=1.0)
  number(config, "diffusion.beta_end", beta_start, below=1.0,
         what=" (at least diffusion.beta_start)")
  number(config, "diffusion.guidance")
  number(config, "diffusion.label_dropout", 0.0, 1.0)
  choice(config, "sampling.method", sampling.METHODS)
  integer(config, "sampling.num_steps", 1, diffusion_steps,
          what=" (at most diffusion.num_steps)")
  number(config, "sampling.eta", 0.0)
  integer(config, "sampling.chunk_size", 1)
  integer(config, "train.batch_size", 1)
  integer(config, "train.gen0_steps", 1)
  number(config, "train.gen0_lr", above=0.0)
  number(config, "train.finetune_epochs", 0.0)
  number(config, "train.finetune_lr", 0.0)
  choices(config, "loop.variants", VARIANTS)
  numbers(config, "loop.lambdas", above=0.0)
  integer(config, "loop.num_generations", 0)
  integer(config, "corrector.clusters_per_class", 1)
  gamma(config, "corrector.gamma")
  integer(config, "classifier.steps", 1)
  integer(config, "classifier.batch_size", 1)
  number(config, "classifier.learning_rate", above=0.0)
  integer(config, "classifier.features", 1)
  pairs = integer(config, "eval.diversity_pairs", 1)
  integer(config, "eval.num_samples", max(2, pairs), what=" (at least eval.diversity_pairs)")
  integer(config, "eval.grid_per_class", 1)




def validate(config: ml_collections.ConfigDict,
             reference: ml_collections.ConfigDict | None = None,
             rules: Callable[[ml_collections.ConfigDict], None] | None = None) -> None:
  """Raises ConfigError / DataError for a config its experiment cannot run with.

  Args:
    config: the experiment's config.
    reference: the experiment's config file at the same preset; its field types are the
      ones `config` must have. None checks ranges only.
    rules: the experiment's own range and cross-field rules (`gaussian`, `mnist` here;
      `selfconsume.humanml.checks.humanml` / `.evaluator` for the motion experiments).
  """
  if reference is not None:
    check_types(config, reference)
  check_finite(config, reference)
  if rules is not None:
    rules(config)


def validate_with(config: ml_collections.ConfigDict,
                  get_config: Callable[[str], ml_collections.ConfigDict],
                  rules: Callable[[ml_collections.ConfigDict], None] | None = None) -> None:
  """`validate` against the experiment's config file (`get_config`) at the config's preset."""
  try:
    reference = get_config(config.get("preset", "") or "")
  except ConfigError:   # a config file of its own with a preset the standard one lacks
    reference = get_config("")
  validate(config, reference, rules)
