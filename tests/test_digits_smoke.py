"""The digits toy end to end: the smoke preset through `python -m experiments.run`, resumed."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from selfconsume import outputs

_CONFIG = "experiments/configs/mnist.py:smoke"


def _run(repo_root: pathlib.Path, workdir: pathlib.Path, *overrides: str
         ) -> subprocess.CompletedProcess:
  # JAX logs every lookup of the persistent compilation cache that misses (conftest.py).
  env = dict(os.environ, JAX_EXPLAIN_CACHE_MISSES="1")
  env["PYTHONPATH"] = str(repo_root) + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run(
      [sys.executable, "-m", "experiments.run", f"--config={_CONFIG}", f"--workdir={workdir}",
       *overrides],
      cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_run(repo_root, tmp_path_factory):
  """Generation 1 of the smoke preset, then a second invocation that resumes it to 2."""
  workdir = tmp_path_factory.mktemp("digits_smoke")
  first = _run(repo_root, workdir, "--config.loop.num_generations=1")
  assert first.returncode == 0, first.stderr[-3000:]
  rows = outputs.read_jsonl(workdir / "metrics.jsonl")
  second = _run(repo_root, workdir)
  assert second.returncode == 0, second.stderr[-3000:]
  return workdir, rows, second.stderr


def test_smoke_preset_writes_every_output(smoke_run):
  workdir, _, _ = smoke_run
  rows = outputs.read_jsonl(workdir / "metrics.jsonl")
  # baseline (lambda 0) + self_consuming + self_correcting (lambda 1.5), generations 0..2.
  assert len(rows) == 9
  for row in rows:
    for key in ("variant", "lambda", "generation", "fid", "diversity", "seconds"):
      assert key in row, (key, row)
    assert row["fid"] >= 0.0 and row["diversity"] > 0.0
  assert {(r["variant"], r["lambda"]) for r in rows} == {
      ("baseline", 0.0), ("self_consuming", 1.5), ("self_correcting", 1.5)}
  corrected = [r for r in rows if r["variant"] == "self_correcting" and r["generation"] > 0]
  assert all(r["corrected_fraction"] == 1.0 for r in corrected)
  summary = outputs.read_json(workdir / "summary.json")
  assert "lambda=1.5" in summary["checks"]
  for name in ("fid.png", "diversity.png", "kmeans_centres_seed0.png",
               "samples/self_correcting_lambda1.5_seed0/gen_002.png"):
    assert (workdir / name).stat().st_size > 0, name


def test_rerun_resumes_without_repeating_generations(smoke_run):
  workdir, first_rows, _ = smoke_run
  rows = outputs.read_jsonl(workdir / "metrics.jsonl")
  assert len(first_rows) == 6
  assert rows[:6] == first_rows
  keys = [(r["variant"], r["generation"]) for r in rows]
  assert len(set(keys)) == len(keys)
  assert sorted(g for v, g in keys[6:]) == [2, 2, 2]


def test_rerun_with_another_config_is_refused(run_command, smoke_run):
  workdir, _, _ = smoke_run
  result = run_command(f"--config={_CONFIG}", f"--workdir={workdir}",
                       "--config.diffusion.guidance=2.0")
  assert result.returncode == 2
  assert "different config" in result.stderr


def test_resumed_run_loads_its_programs_from_the_cache(smoke_run):
  """The resumed invocation trains and samples from restored states, placed as the first
  invocation's computed ones were: its training and sampling programs are cache hits."""
  _, _, resumed_log = smoke_run
  if not os.environ.get("SELFCONSUME_JAX_CACHE"):
    pytest.skip("the compilation cache is off (SELFCONSUME_JAX_CACHE=)")
  missed = re.findall(r"PERSISTENT COMPILATION CACHE MISS for '(\w+)'", resumed_log)
  assert missed, "no cache lookups were logged"  # the log this test reads is there
  assert not {"jit_train_step", "jit_sample_chunk"} & set(missed), sorted(set(missed))
