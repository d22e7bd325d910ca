r"""Runs one experiment from an ml_collections config file.

  python -m experiments.run --config=experiments/configs/humanml.py --workdir=runs/humanml
  python -m experiments.run --config=experiments/configs/gaussian.py:smoke --workdir=/tmp/g
  python -m experiments.run --config=experiments/configs/humanml.py \
      --config.data.root=/data/HumanML3D --workdir=runs/real

The config's `experiment` field names the module in `experiments/` whose
`run(config, workdir)` carries it out. Mistakes in the input (an unknown preset or key, a
value out of range, a malformed dataset, an incompatible checkpoint, a workdir that holds
another run or is in use) end the program with exit code 2 and a one-line message instead of
a traceback. The config is validated before any work (selfconsume.validation); the traceback
goes to the log file named on that line: <workdir>/error.log once the run has started there,
else a temporary file, so that a refused workdir stays untouched.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import importlib.util
import os
import sys
import tempfile
import traceback
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from selfconsume import errors
from selfconsume import outputs
from selfconsume import validation
from selfconsume import workdir as workdir_lib
from selfconsume.humanml import checks as humanml_checks

# experiment name -> module in experiments/ that defines run(config, workdir).
EXPERIMENTS = {
    "gaussian": "experiments.gaussian",
    "humanml": "experiments.humanml",
    "mnist": "experiments.mnist",
    "evaluator": "experiments.evaluator",
}



def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command line of this module, in `flag_values` (absl's global FLAGS when it runs as
  the program; defined only then, so that importing `run_experiment` elsewhere does not claim
  the flag names; a fresh FlagValues runs the command inside another program: `command`)."""
  config_flags.DEFINE_config_file(
      "config", None, "Config file, optionally with a preset: path/to/config.py[:preset].",
      lock_config=True, flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "Directory for all outputs of the run.",
                      flag_values=flag_values)
  flags.DEFINE_bool("library_logs", False,
                    "Show the INFO logs of orbax, jax and matplotlib (off: their warnings only).",
                    flag_values=flag_values)
  flags.mark_flags_as_required(["config"], flag_values=flag_values)


# The compilation cache's bound: the default preset's programs take tens of MB each.
CACHE_BYTES = 8 << 30


def enable_compilation_cache(min_compile_seconds: float = 1.0) -> None:
  """Keeps XLA's compiled programs on disk so a rerun skips most compiles.

  The directory is $SELFCONSUME_JAX_CACHE, default ~/.cache/selfconsume/jax; set it to an
  empty string to turn the cache off. Programs that took at least `min_compile_seconds` to
  compile are kept. The cache is bounded (CACHE_BYTES, least recently used entries go first),
  which also makes JAX lock it while reading and writing, so processes may share it (seeds
  run side by side, the test suite's workers).
  """
  directory = os.environ.get(
      "SELFCONSUME_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "selfconsume", "jax"))
  if directory:
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)


# Experiments whose run() claims its workdir (selfconsume.workdir: identity and lock); the
# others only need it to exist.
# Each experiment's range and cross-field rules (selfconsume.validation.validate).
RULES = {"evaluator": humanml_checks.evaluator, "gaussian": validation.gaussian,
         "humanml": humanml_checks.humanml, "mnist": validation.mnist}

CLAIMING = ("gaussian", "humanml", "mnist")

# Errors that describe the input (a config value, a dataset file, a checkpoint, the workdir,
# a file the run cannot write), not a bug: one line on the console, exit code 2.
USER_ERRORS = (errors.ConfigError, errors.DataError, errors.CheckpointError,
               errors.NonFiniteError, OSError)


# Allocations between two young-generation collections of CPython's cycle collector (700 by
# default); a middle-generation collection every 20 young ones, a full one every 10 middle
# ones (10 and 10 by default).
GC_YOUNG_ALLOCATIONS = 50_000


def relax_garbage_collection() -> None:
  """Runs CPython's cycle collector's young collections ~70x less often, full ones ~140x.

  Tracing a JAX program allocates millions of small objects that live until the program is
  lowered (jaxpr equations, tracers, avals); at the default thresholds the collector keeps
  rescanning them (tracing and lowering the corrector tests' gradient-refined rollout: 85-106 s
  at the defaults, 60-78 s with these, on the 2-core CI machine). Reference counting still
  frees everything acyclic at once; only cycles wait longer.
  """
  gc.set_threshold(GC_YOUNG_ALLOCATIONS, 20, 10)


def run_experiment(config, workdir: str):
  """Validates the config and the workdir path, then dispatches to the experiment's module;
  returns what its `run` returns."""
  name = config.get("experiment")
  if name not in EXPERIMENTS:
    raise errors.ConfigError(
        f"config.experiment = {name!r} is not one of {sorted(EXPERIMENTS)}")
  config_module = importlib.import_module(f"experiments.configs.{name}")
  validation.validate_with(config, config_module.get_config, RULES[name])
  workdir_lib.check_path(workdir)
  module = importlib.import_module(EXPERIMENTS[name])
  if name not in CLAIMING:
    os.makedirs(workdir, exist_ok=True)
  return module.run(config, workdir)


def one_line(error: BaseException) -> str:
  """The console's view of an error: its first line (an OSError: what and which file)."""
  if isinstance(error, OSError) and error.strerror:
    where = error.filename if error.filename is not None else ""
    return f"{error.strerror}: {where}" if where else error.strerror
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__


def write_error_log(workdir: str, error: BaseException) -> str:
  """Writes the error's traceback to <workdir>/error.log when the error ended a run that had
  started there, else (a refused or unusable workdir stays untouched) to a temporary file;
  returns the path."""
  text = (f"{datetime.datetime.now().isoformat(timespec='seconds')} "
          f"{' '.join(sys.argv)}\n" +
          "".join(traceback.format_exception(type(error), error, error.__traceback__)))
  if (workdir_lib.started_in(error) == os.path.abspath(workdir)
      and not isinstance(error, workdir_lib.WorkdirError)):
    path = os.path.join(workdir, "error.log")
    try:
      with open(path, "a") as f:
        f.write(text + "\n")
      return path
    except OSError:
      pass
  fd, path = tempfile.mkstemp(prefix="selfconsume-error-", suffix=".log")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  return path


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = flag_values.config
  workdir = flag_values.workdir or os.path.join(
      "runs", f"{config.get('experiment', 'run')}{('-' + config.preset) if config.get('preset') else ''}")
  if not flag_values.library_logs:
    outputs.quiet_console()
  logging.info("experiment %s, preset %r, workdir %s", config.get("experiment"),
               config.get("preset", ""), workdir)
  enable_compilation_cache()
  relax_garbage_collection()
  try:
    run_experiment(config, workdir)
  except USER_ERRORS as e:
    print(f"error: {one_line(e)} (details: {write_error_log(workdir, e)})", file=sys.stderr)
    sys.exit(2)


def command(args: Sequence[str]) -> int:
  """Runs `python -m experiments.run ARGS...` inside this process (a notebook, a test): the
  same parsing, checks and messages; returns the exit code (0, or 2 for a refused input).

  Its flags go to a FlagValues of their own, so absl's global flags are left alone; sys.argv
  is the command's while it runs (the error log records it).
  """
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  argv = ["experiments.run", *args]
  saved_argv, sys.argv = sys.argv, argv
  try:
    main(_parse_flags(argv, flag_values), flag_values)
  except app.UsageError as e:            # what app.run reports with usage, exit code 1
    print(f"error: {e}", file=sys.stderr)
    return e.exitcode
  except SystemExit as e:
    return 0 if e.code is None else int(e.code)
  finally:
    sys.argv = saved_argv
  return 0


def _config_arg(argv) -> tuple[str, str] | None:
  """(file, preset) of the --config=path/to/config.py[:preset] argument, if given."""
  value = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if value is None:
    return None
  path, _, preset = value.partition(":")
  return path, preset


def _missing_override(argv) -> str | None:
  """Names the first --config.a.b=... override whose field the config does not have."""
  config_arg = _config_arg(argv)
  if config_arg is None:
    return None
  path, preset = config_arg
  spec = importlib.util.spec_from_file_location("_config_for_error", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(preset)
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    dotted = arg[len("--config."):].split("=", 1)[0]
    node = config
    for depth, field in enumerate(dotted.split(".")):
      if not hasattr(node, "keys") or field not in node:
        parent = ".".join(["config"] + dotted.split(".")[:depth])
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(not a group)"
        return f"--config.{dotted}: {parent} has no field {field!r}; its fields are: {known}"
      node = node[field]
  return None


def _parse_flags(argv, flag_values: flags.FlagValues = flags.FLAGS):
  """absl's flag parser, with config mistakes reported as one line instead of a traceback."""
  config_arg = _config_arg(argv)
  if config_arg is not None and not os.path.isfile(config_arg[0]):
    print(f"error: --config: no config file {config_arg[0]!r} "
          f"(the configs are in experiments/configs/)", file=sys.stderr)
    sys.exit(2)
  try:
    return flag_values(argv)
  except errors.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
  except (AttributeError, KeyError) as e:
    try:
      message = _missing_override(argv)
    except Exception:  # pylint: disable=broad-except
      message = None
    print(f"error: {message or f'bad --config override: {e}'}", file=sys.stderr)
  except (flags.Error, OSError) as e:
    print(f"error: {_without_traceback(str(e))}", file=sys.stderr)
  sys.exit(2)


def _without_traceback(message: str) -> str:
  """The first and the last line of a message that embeds a traceback (absl does that)."""
  lines = [line for line in message.splitlines() if line.strip()]
  if len(lines) <= 2 or not any("Traceback" in l or "Attempted" in l for l in lines):
    return message
  last = lines[-1].strip()
  if last.startswith("selfconsume.errors."):
    last = last.split(": ", 1)[-1]
  return f"{lines[0].rstrip(': ')}: {last}"


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=_parse_flags)
