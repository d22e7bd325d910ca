"""End to end: `experiments.run` with experiments/configs/evaluator.py:smoke."""

from __future__ import annotations

import json
import os

import pytest

from experiments import run as run_lib
from experiments.configs import evaluator as evaluator_config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("evaluator-experiment")
  config = evaluator_config.get_config("smoke")
  config.data.corpus_dir = str(base / "corpus")
  config.cache_dir = str(base / "cache")
  first = run_lib.run_experiment(config, str(base / "run1"))
  second = run_lib.run_experiment(config, str(base / "run2"))
  return base, first, second


def test_trains_once_then_loads_from_cache(smoke_run):
  base, first, second = smoke_run
  assert not first["loaded_from_cache"] and second["loaded_from_cache"]
  assert first["cache_path"] == second["cache_path"]
  assert os.path.isdir(first["cache_path"])
  with open(base / "run1" / "evaluator_report.json") as f:
    assert json.load(f)["cache_key"] == first["cache_key"]
  # A cached evaluator gives exactly the numbers of the freshly trained one.
  assert first["sanity"] == second["sanity"]
  assert first["real_as_generated"] == second["real_as_generated"]


def test_report_holds_the_sanity_checks(smoke_run):
  _, report, _ = smoke_run
  assert report["same_key_same_metrics"]
  assert report["families_known"]   # the procedural corpus's families were recovered
  sanity = report["sanity"]
  # A tiny evaluator after 150 steps: the checks must point the right way, with margins
  # far looser than those of the default evaluator (see the issue report).
  assert sanity["fid_real_halves"] < sanity["fid_real_noise"]
  assert sanity["real_r_precision_top3"] > 3 / 32
  assert sanity["own_caption_distance"] < sanity["other_family_caption_distance"]
  for name in ("fid", "r_precision_top3", "matching_score", "diversity"):
    assert name in report["real_as_generated"]


def test_unknown_preset_is_a_config_error():
  from selfconsume.errors import ConfigError
  with pytest.raises(ConfigError, match="unknown preset"):
    evaluator_config.get_config("huge")
