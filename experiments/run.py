r"""Runs one experiment from an ml_collections config file.

  python -m experiments.run --config=experiments/configs/humanml.py --workdir=runs/humanml
  python -m experiments.run --config=experiments/configs/gaussian.py:smoke --workdir=/tmp/g
  python -m experiments.run --config=experiments/configs/humanml.py \
      --config.data.root=/data/HumanML3D --workdir=runs/real

The config's `experiment` field names the module in `experiments/` whose
`run(config, workdir)` carries it out. Mistakes in the input (an unknown preset or key, a
value out of range, a malformed dataset, an incompatible checkpoint) end the program with a
one-line message instead of a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from selfconsume import errors

# experiment name -> module in experiments/ that defines run(config, workdir).
EXPERIMENTS = {
    "gaussian": "experiments.gaussian",
    "humanml": "experiments.humanml",
    "mnist": "experiments.mnist",
    "evaluator": "experiments.evaluator",
}

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a preset: path/to/config.py[:preset].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs of the run.")
flags.mark_flags_as_required(["config"])


def enable_compilation_cache() -> None:
  """Keeps XLA's compiled programs on disk so a rerun skips most compiles.

  The directory is $SELFCONSUME_JAX_CACHE, default ~/.cache/selfconsume/jax; set it to an
  empty string to turn the cache off.
  """
  directory = os.environ.get(
      "SELFCONSUME_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "selfconsume", "jax"))
  if directory:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def run_experiment(config, workdir: str):
  """Dispatches to the experiment's module; returns what its `run` returns."""
  name = config.get("experiment")
  if name not in EXPERIMENTS:
    raise errors.ConfigError(
        f"config.experiment = {name!r} is not one of {sorted(EXPERIMENTS)}")
  module = importlib.import_module(EXPERIMENTS[name])
  os.makedirs(workdir, exist_ok=True)
  return module.run(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join(
      "runs", f"{config.get('experiment', 'run')}{('-' + config.preset) if config.get('preset') else ''}")
  logging.info("experiment %s, preset %r, workdir %s", config.get("experiment"),
               config.get("preset", ""), workdir)
  enable_compilation_cache()
  try:
    run_experiment(config, workdir)
  except (errors.ConfigError, errors.DataError, errors.CheckpointError,
          errors.NonFiniteError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv):
  """absl's flag parser, with config mistakes reported as one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
