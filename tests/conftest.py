"""Test-wide setup: JAX's persistent compilation cache, so that a second run of the suite
skips most XLA compiles (CPU compiles of the Brax rollout take minutes)."""

import os
import pathlib

import jax
import pytest

_CACHE = os.environ.get(
    "SELFCONSUME_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "selfconsume" / "jax"))
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT
