"""The main command end to end on the smoke preset: outputs, resume after a crash, sampling.

One module-scoped run of `experiments/configs/humanml.py:smoke` (all three variants, two
generations) is shared by the tests; the resume test copies its workdir, rewinds it to the
state a crash during generation 2 leaves behind, reruns, and compares.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from experiments import humanml
from experiments import sample as sample_cli
from experiments.configs import humanml as humanml_config
from selfconsume import errors
from selfconsume import outputs


def _smoke_config(tmp_root):
  config = humanml_config.get_config("smoke")
  config.data.corpus_dir = str(tmp_root / "corpus")
  config.eval.evaluator_cache = str(tmp_root / "evaluators")
  return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("humanml_smoke")
  workdir = root / "run"
  summary = humanml.run(_smoke_config(root), str(workdir))
  return root, workdir, summary


def _rows(workdir):
  rows = outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  for row in rows:
    row.pop("seconds")
  return rows


def test_smoke_run_writes_everything(smoke_run):
  _, workdir, summary = smoke_run
  rows = outputs.read_jsonl(workdir / "metrics.jsonl")
  config = humanml_config.get_config("smoke")
  assert len(rows) == 3 * (config.loop.generations + 1)
  for row in rows:
    for key in ("variant", "lambda", "generation", "fid", "r_precision", "matching",
                "diversity", "multimodality", "float_mm", "penetrate_mm", "skate",
                "tracking_error_m", "fall_rate", "seconds"):
      assert key in row, key
    assert np.isfinite(row["fid"])
    assert len(row["r_precision"]) == 3
  corrected = [r for r in rows if r["variant"] == "self_correcting" and r["generation"] > 0]
  assert corrected and all(r["tracking_error_m"] is not None for r in corrected)
  assert "n8/lambda1" in summary["comparisons"]
  # The corrector applied to real test motions, scored like a model and written once.
  floor = summary["correction_floor"]
  assert np.isfinite(floor["fid"]) and 0.0 <= floor["fall_rate"] <= 1.0
  assert floor["tracking_error_m"] > 0.0 and floor["num_samples"] > 0
  assert (workdir / "correction_floor.json").exists()
  assert (workdir / "summary.json").exists()
  assert (workdir / "plots" / "n8_lambda1.png").exists()
  assert os.listdir(workdir / "tensorboard")
  videos = [f for _, _, files in os.walk(workdir / "videos") for f in files]
  assert any("gen000" in f for f in videos) and any("correction" in f for f in videos)
  for variant in ("self_consuming", "self_correcting"):
    assert (workdir / "checkpoints" / "n8" / "lambda1" / variant / "gen_002" / "state").is_dir()
  assert (workdir / "checkpoints" / "n8" / "baseline" / "gen_002" / "state").is_dir()


def test_crash_mid_generation_then_rerun_matches(smoke_run):
  root, workdir, _ = smoke_run
  crashed = root / "crashed"
  shutil.copytree(workdir, crashed)
  for name in ("metrics.jsonl", "summary.json"):
    os.remove(crashed / name)
  # What a kill during generation 2 leaves: generation 1 finished everywhere, generation 2
  # finished for baseline only, and a checkpoint without its row for self_consuming.
  for variant in ("self_consuming", "self_correcting"):
    gen2 = crashed / "checkpoints" / "n8" / "lambda1" / variant / "gen_002"
    os.remove(gen2 / "row.json")
    if variant == "self_correcting":
      shutil.rmtree(gen2)
  humanml.run(_smoke_config(root), str(crashed))
  assert _rows(crashed) == _rows(workdir)


def test_sample_command_writes_arrays_and_videos_and_is_seeded(smoke_run):
  root, workdir, _ = smoke_run
  prompts = ["a person walks forward", "a person jumps"]
  out_a = sample_cli.sample_prompts(str(workdir), prompts, num_samples=2, length_s=1.5,
                                    seed=3, out_dir=str(root / "samples_a"))
  assert out_a["generation"] == 2
  for prompt in prompts:
    directory = out_a["prompts"][prompt]
    features = np.load(os.path.join(directory, "features.npy"))
    joints = np.load(os.path.join(directory, "joints.npy"))
    assert features.shape == (2, 30, 263) and joints.shape == (2, 30, 22, 3)
    assert os.path.exists(os.path.join(directory, "sample_1.gif"))
    report = outputs.read_json(os.path.join(directory, "physics.json"))
    assert set(report["samples"][0]["physics"]) >= {"float_mm", "penetrate_mm", "skate"}
  out_b = sample_cli.sample_prompts(str(workdir), prompts[:1] + ["someone waves"],
                                    num_samples=2, length_s=1.5, seed=3,
                                    out_dir=str(root / "samples_b"))
  same_a = np.load(os.path.join(out_a["prompts"][prompts[0]], "features.npy"))
  same_b = np.load(os.path.join(out_b["prompts"][prompts[0]], "features.npy"))
  np.testing.assert_array_equal(same_a, same_b)


def test_sample_command_errors_name_what_exists(smoke_run):
  _, workdir, _ = smoke_run
  with pytest.raises(errors.CheckpointError, match="self_correcting"):
    sample_cli.sample_prompts(str(workdir), ["a person walks"], variant="nope")
  with pytest.raises(errors.CheckpointError, match=r"\[0, 1, 2\]"):
    sample_cli.sample_prompts(str(workdir), ["a person walks"], generation="7")
  with pytest.raises(errors.ConfigError, match="empty"):
    sample_cli.sample_prompts(str(workdir), ["  "])
  with pytest.raises(errors.ConfigError, match="at most"):
    sample_cli.sample_prompts(str(workdir), ["walk " * 50])
  with pytest.raises(errors.ConfigError, match="frames"):
    sample_cli.sample_prompts(str(workdir), ["a person walks"], length_s=30.0)
  with pytest.raises(errors.CheckpointError, match="config.json"):
    sample_cli.sample_prompts(str(workdir / "plots"), ["a person walks"])
