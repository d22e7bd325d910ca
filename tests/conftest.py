"""Test-wide setup: JAX's persistent compilation cache for the tests' own process, opt-in.

With SELFCONSUME_JAX_CACHE=DIR a second run of the suite skips most XLA compiles (CPU
compiles of the Brax rollout take minutes). It is off by default: on a full run from an
empty cache, jaxlib 0.10.2 crashed the process (SIGSEGV / SIGABRT inside
`compilation_cache.put_executable_and_time`, at the same test twice) while writing an
executable; without the cache nothing is serialized. The commands the tests start
(`experiments.run`) keep their own cache."""

import os
import pathlib

import jax
import pytest

_CACHE = os.environ.get("SELFCONSUME_JAX_CACHE", "")
if _CACHE:
  jax.config.update("jax_compilation_cache_dir", _CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
