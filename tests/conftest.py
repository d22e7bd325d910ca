"""Test-wide setup: one JAX persistent compilation cache for the whole test run.

Tests build the same compiled programs more than once: a run and its resumed rerun, the
sample and evaluate commands on a finished run, the corrector's rollout of eight motions x 41
frames (the physics tests of two files, the motion smoke run's correction floor and
diagnostics), the smoke preset's fit and evaluation in several files. The pytest
process that starts the run (xdist's controller, or the only process with -n 0) makes one
empty cache directory, removed when the run ends, and hands it to everything it starts
through $SELFCONSUME_JAX_CACHE: xdist's workers, which inherit the environment, and the
commands the tests start (`experiments.run`). So every suite run starts from an empty cache
and a program compiled by one worker is read by the other. Writers and readers take the
cache's file lock (JAX locks it whenever the cache has a size bound; `filelock`), so a
worker never reads an entry the other is still writing. SELFCONSUME_JAX_CACHE=DIR keeps the
cache in DIR across suite runs; SELFCONSUME_JAX_CACHE= (empty) turns it off. (jaxlib 0.10.2
once crashed inside `put_executable_and_time` late in a one-process suite; that process also
accumulated compiled programs until XLA aborted, which `_release_compiled_programs` now
prevents.)"""

import contextlib
import functools
import io
import os
import pathlib
import shutil
import subprocess
import tempfile

import jax
import pytest

from experiments import run as run_lib
from selfconsume.physics import corrector
from selfconsume.physics import refine
from selfconsume.physics import rollout

# Set in the environment when this process starts: by the user, or by the process that
# started this one (an xdist worker's controller), which removes it at the end.
_GIVEN_CACHE = os.environ.get("SELFCONSUME_JAX_CACHE")
if _GIVEN_CACHE is None:
  # Set at import, before xdist starts its workers (they inherit it) and before any test
  # module is imported (JAX decides at its first compile whether a cache is used).
  os.environ["SELFCONSUME_JAX_CACHE"] = tempfile.mkdtemp(prefix="selfconsume-tests-jax-")
# Tests keep even the small programs (the commands keep those that take a second or more).
run_lib.enable_compilation_cache(min_compile_seconds=0.5)
# Every test traces programs: the commands' collector thresholds (xdist's workers import this).
run_lib.relax_garbage_collection()

# The suite compiles far more than it runs: most programs run a few times on tiny shapes. At
# LLVM optimisation level 0, XLA:CPU compiles them in a third to half less time and runs them
# somewhat slower (the motion smoke run: 317 s -> 244 s; its FIDs agree to 5e-4, rounding:
# the numerics are IEEE either way, only the machine code differs). Set here, before the
# first compile, for this process, xdist's workers and the commands the tests start (which
# inherit the environment; tests that add flags for a subprocess append to these). A level
# the user sets in XLA_FLAGS is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()


# The exception: the corrector's compiled rollouts (plain and gradient-refined) are runtime-
# bound. The physics tests, the motion smoke run's correction floor and diagnostics run them
# many times on 8 motions x 41 frames x 10 substeps, and at level 0 they run ~3x slower while
# compiling barely faster (the gradient-refined one: 186 s at level 0, 200 s at level 2; 60 s
# vs 17.5 s per call). So in this process and xdist's workers, called on the host they
# compile at XLA:CPU's default level 3 (`compiler_options` on a jit around the library's);
# traced into a caller's program (the fused generation) they are part of that program, at
# its level (JAX takes compiler options on top-level jits only). A level set in XLA_FLAGS
# does not reach these two.
RUNTIME_BOUND_LEVEL = {"xla_backend_optimization_level": 3}


class _OnTheHostAtDefaultLevel:
  """A library-jitted rollout that compiles at RUNTIME_BOUND_LEVEL when called on the host;
  its other attributes (`lower`, `_cache_size`) are that top-level jit's."""

  def __init__(self, jitted):
    self._jitted = jitted
    self._top_level = jax.jit(jitted, compiler_options=RUNTIME_BOUND_LEVEL)

  def __call__(self, *args):
    # pylint: disable=protected-access
    return (self._jitted if corrector._traced(args) else self._top_level)(*args)

  def __getattr__(self, name):
    return getattr(self._top_level, name)


def _at_default_level(compiled_for):
  return functools.lru_cache(maxsize=16)(
      lambda static: _OnTheHostAtDefaultLevel(compiled_for(static)))


@pytest.fixture(autouse=True, scope="session")
def _runtime_bound_rollouts_at_default_level():
  with pytest.MonkeyPatch.context() as patch:
    # pylint: disable=protected-access
    patch.setattr(rollout, "_compiled", _at_default_level(rollout._compiled))
    patch.setattr(refine, "_compiled", _at_default_level(refine._compiled))
    yield


def pytest_unconfigure(config):
  del config
  if _GIVEN_CACHE is None:
    shutil.rmtree(os.environ["SELFCONSUME_JAX_CACHE"], ignore_errors=True)


# The longest test files (minutes each on the 2-core CI machine, longest first) run first,
# the rest after them in collection order: the two workers then finish together (longest-
# processing-time-first scheduling), and files that compile programs other files load from
# the shared cache (the smoke run, the physics tests' rollout) run before those files.
_LONGEST_FIRST = ("test_humanml_smoke.py", "test_physics_corrector.py",
                  "test_humanml_parallel.py", "test_physics_failsafe.py", "test_workdir_runs.py",
                  "test_digits_smoke.py", "test_fit_resume.py", "test_checkpoint_roundtrip.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep order


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


@pytest.fixture
def run_command(repo_root):
  """A function that runs `python -m experiments.run ARGS...` inside the test's process
  (experiments.run.command; config paths relative to the repository) and returns a
  CompletedProcess with its exit code and console output: the command's parsing, checks and
  messages without a second process's start-up (seconds each: the refusal tests run ~20).
  The compilation-cache threshold the command sets is put back."""

  def run(*args: str) -> subprocess.CompletedProcess:
    args = [f"--config={repo_root / a.split('=', 1)[1]}" if a.startswith("--config=") else a
            for a in args]
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
      with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_lib.command(args)
    finally:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", threshold)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())

  return run


def _truncate_checkpoint_arrays(path, min_bytes: int = 0) -> int:
  """Cuts every array file of the orbax checkpoint under `path` to nothing; returns how many.

  (Cutting to half is not always a corruption: small arrays can sit in a part of a file that
  survives.)"""
  truncated = 0
  for directory, _, names in os.walk(path):
    for name in names:
      file = os.path.join(directory, name)
      if os.sep + "ocdbt.process_0" + os.sep in file and os.path.getsize(file) > min_bytes:
        with open(file, "r+b") as f:
          f.truncate(0)
        truncated += 1
  return truncated


@pytest.fixture
def truncate_checkpoint():
  """A function that truncates an orbax checkpoint's array files (a crash or a bad disk)."""
  return _truncate_checkpoint_arrays


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's in-memory compiled programs after every test module: a full suite in one
  process otherwise accumulates them until XLA's CPU compiler aborts (seen at ~90% of the
  suite, three times, with and without the persistent cache)."""
  yield
  jax.clear_caches()
