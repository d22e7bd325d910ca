"""Test-wide setup: JAX's persistent compilation cache, one per test process.

Tests build the same compiled programs more than once: a run and its resumed rerun, the
sample and evaluate commands on a finished run, the commands the tests start. Each pytest
process (each xdist worker) compiles into its own cache directory, empty at start and
removed at exit, so every suite run starts from an empty cache and the two workers never
write one file. Commands the tests start (`experiments.run`) inherit it through
$SELFCONSUME_JAX_CACHE. SELFCONSUME_JAX_CACHE=DIR keeps the cache in DIR across suite runs;
SELFCONSUME_JAX_CACHE= (empty) turns it off. (jaxlib 0.10.2 once crashed inside
`put_executable_and_time` late in a one-process suite; that process also accumulated
compiled programs until XLA aborted, which `_release_compiled_programs` now prevents.)"""

import os
import pathlib
import shutil
import tempfile

import jax
import pytest

# None: the user set no cache, so this process makes its own (see the module docstring).
_USER_CACHE = os.environ.get("SELFCONSUME_JAX_CACHE")
_CACHE = (tempfile.mkdtemp(prefix="selfconsume-tests-jax-") if _USER_CACHE is None
          else _USER_CACHE)
if _CACHE:
  # Set before any test module is imported: JAX decides at its first compile whether a cache
  # is used.
  jax.config.update("jax_compilation_cache_dir", _CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(autouse=True, scope="session")
def _commands_share_the_cache():
  """Commands the tests start compile into this process's cache. Set here, in a process that
  runs tests, not at import: xdist's workers would inherit the controller's directory."""
  if _USER_CACHE is None:
    os.environ["SELFCONSUME_JAX_CACHE"] = _CACHE
  yield


def pytest_unconfigure(config):
  del config
  if _USER_CACHE is None:
    shutil.rmtree(_CACHE, ignore_errors=True)


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


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
