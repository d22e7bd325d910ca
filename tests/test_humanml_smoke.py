"""The main command end to end on the smoke preset: outputs, resume after a crash, sampling.

One module-scoped run of `experiments/configs/humanml.py:smoke` (all three variants, two
generations) is shared by the tests; the resume test copies its workdir, rewinds it to the
state a crash during generation 2 leaves behind, reruns, and compares.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil

import jax
import numpy as np
import pytest

from benchmarks import humanml_diagnostics
from benchmarks import humanml_visibility
from experiments import humanml
from experiments import sample as sample_cli
from experiments.configs import humanml as humanml_config
from selfconsume import errors
from selfconsume import metric_writers
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
  # The synthetic motions each generation trained on are scored too (not baseline's: none).
  for row in rows:
    # A generation whose motions the humanoid could follow none of trains on real ones only.
    trained_on_synthetic = (row["variant"] != "baseline" and row["generation"] > 0
                            and (row.get("dropped_fraction") or 0.0) < 1.0)
    assert ("synthetic_penetrate_mm" in row) == trained_on_synthetic
    if trained_on_synthetic:
      assert all(np.isfinite(row[f"synthetic_{k}"]) and row[f"synthetic_{k}"] >= 0
                 for k in ("float_mm", "penetrate_mm", "skate", "jerk"))
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
  with _persistent_cache_misses() as misses:
    humanml.run(_smoke_config(root), str(crashed))
  assert _rows(crashed) == _rows(workdir)
  # The rerun's generations start from restored checkpoints, placed like computed states,
  # so their programs are those the first run compiled: found in the compilation cache.
  if jax.config.jax_compilation_cache_dir:
    assert not [name for name in misses if name.startswith("jit_run_generation")], misses


@contextlib.contextmanager
def _persistent_cache_misses():
  """The names of the programs this process looked up in the persistent compilation cache
  (conftest.py) and did not find, while the block runs (JAX logs each miss at DEBUG)."""
  misses: list[str] = []

  class Misses(logging.Handler):
    def emit(self, record):
      if record.msg.startswith("PERSISTENT COMPILATION CACHE MISS"):
        misses.append(str(record.args[0]))

  logger = logging.getLogger("jax._src.compiler")
  handler, level = Misses(logging.DEBUG), logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.DEBUG)
  try:
    yield misses
  finally:
    logger.removeHandler(handler)
    logger.setLevel(level)


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
    # MDM's names and results.npy: its renderers find results.npy next to sampleXX_repYY.mp4.
    assert os.path.exists(os.path.join(directory, "sample00_rep01.mp4"))
    assert os.path.exists(os.path.join(directory, "sample00_rep01.html"))
    results = np.load(os.path.join(directory, "results.npy"), allow_pickle=True).item()
    assert results["motion"].shape == (2, 22, 3, 30)
    np.testing.assert_array_equal(results["motion"][1].transpose(2, 0, 1), joints[1])
    assert results["text"] == [prompt, prompt] and list(results["lengths"]) == [30, 30]
    assert results["num_samples"] == 1 and results["num_repetitions"] == 2
    report = outputs.read_json(os.path.join(directory, "physics.json"))
    assert set(report["samples"][0]["physics"]) >= {"float_mm", "penetrate_mm", "skate"}
  out_b = sample_cli.sample_prompts(str(workdir), prompts[:1] + ["someone waves"],
                                    num_samples=2, length_s=1.5, seed=3,
                                    out_dir=str(root / "samples_b"))
  same_a = np.load(os.path.join(out_a["prompts"][prompts[0]], "features.npy"))
  same_b = np.load(os.path.join(out_b["prompts"][prompts[0]], "features.npy"))
  np.testing.assert_array_equal(same_a, same_b)


def test_sample_length_defaults_to_the_run_and_unknown_words_are_named(smoke_run, caplog):
  root, workdir, _ = smoke_run
  out = sample_cli.sample_prompts(str(workdir), ["a person walks zorbly forward"],
                                  num_samples=1, out_dir=str(root / "samples_c"),
                                  video_format="gif")
  max_frames = humanml_config.get_config("smoke").data.max_frames
  assert out["frames"] == max_frames
  directory = out["prompts"]["a person walks zorbly forward"]
  assert np.load(os.path.join(directory, "joints.npy")).shape[1] == max_frames
  assert os.path.exists(os.path.join(directory, "sample00_rep00.gif"))
  assert out["unknown_words"] == {"a person walks zorbly forward": ["zorbly"]}
  assert "zorbly" in caplog.text
  with pytest.raises(errors.ConfigError, match="no word the model knows"):
    sample_cli.sample_prompts(str(workdir), ["zorbly blorp"])


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


def _table_cells(html_text):
  """The results table's rows: (variant, kind, generation) -> {metric: value}."""
  import html.parser  # pylint: disable=g-import-not-at-top

  class Cells(html.parser.HTMLParser):
    def __init__(self):
      super().__init__()
      self.rows, self.current, self.in_results = {}, None, False

    def handle_starttag(self, tag, attrs):
      attrs = dict(attrs)
      if tag == "table":
        self.in_results = "results" in (attrs.get("class") or "")
      elif tag == "tr" and self.in_results and "data-variant" in attrs:
        self.current = (attrs["data-variant"], attrs["data-kind"], int(attrs["data-generation"]))
        self.rows[self.current] = {}
      elif tag == "td" and self.current and "data-value" in attrs:
        self.rows[self.current][attrs["data-metric"]] = float(attrs["data-value"])

    def handle_endtag(self, tag):
      if tag == "tr":
        self.current = None

  parser = Cells()
  parser.feed(html_text)
  return parser.rows


def test_report_table_matches_metrics_jsonl(smoke_run, tmp_path):
  from selfconsume import report  # pylint: disable=g-import-not-at-top
  _, workdir, _ = smoke_run
  path = workdir / "report.html"
  assert path.exists()  # written at the end of the run
  text = path.read_text()
  cells = _table_cells(text)
  rows = outputs.read_jsonl(workdir / "metrics.jsonl")
  for variant in ("baseline", "self_consuming", "self_correcting"):
    mine = [r for r in rows if r["variant"] == variant and r["generation"] > 0]
    last = max(mine, key=lambda r: r["generation"])
    best = min(mine, key=lambda r: r["fid"])
    for kind, row in (("last", last), ("best", best)):
      got = cells[(variant, kind, row["generation"])]
      assert got["fid"] == row["fid"]
      assert got["r_precision_top3"] == row["r_precision"][2]
      assert got["float_mm"] == row["float_mm"] and got["skate"] == row["skate"]
  gen0 = next(r for r in rows if r["generation"] == 0)
  assert cells[("generation0", "generation 0", 0)]["fid"] == gen0["fid"]
  # Reference lines and rows: the real data's FID and the correction floor.
  floor = outputs.read_json(workdir / "correction_floor.json")
  assert f'data-value="{floor["fid"]!r}"' in text
  assert f'data-value="{gen0["real_fid"]!r}"' in text
  assert "data:image/png;base64," in text and "interactive 3-D view" in text
  # Videos and 3-D views are linked by paths relative to the page, and exist.
  for link in re.findall(r'(?:src|href)="(videos/[^"]+)"', text):
    assert (workdir / link).exists(), link
  # Several runs (here the same run twice under two names): the aggregate over runs.
  twin = tmp_path / "twin"
  shutil.copytree(workdir, twin, ignore=shutil.ignore_patterns("checkpoints", "evaluator"))
  both = report.write_report([str(workdir), str(twin)], str(tmp_path / "both.html"))
  both_text = open(both).read()
  assert 'class="aggregate"' in both_text and "Over 2 runs" in both_text


def test_tensorboard_tags_are_metric_over_variant_by_generation(smoke_run):
  _, workdir, _ = smoke_run
  scalars = metric_writers.read_scalars(workdir / "tensorboard" / "n8_lambda1")
  for variant in ("baseline", "self_consuming", "self_correcting"):
    assert sorted(step for step, _ in scalars[f"fid/{variant}"]) == [0, 1, 2]
    assert scalars[f"fit_loss/{variant}"]
  rows = outputs.read_jsonl(workdir / "metrics.jsonl")
  last = next(r for r in rows if r["variant"] == "self_correcting" and r["generation"] == 2)
  assert dict(scalars["fid/self_correcting"])[2] == pytest.approx(last["fid"], rel=1e-6)
  for tag in scalars:
    assert tag.split("/")[0] not in ("generation", "lambda", "n", "seed"), tag
    assert not tag.startswith("real_") and "_ci95" not in tag, tag


def test_evaluate_command_reproduces_a_row_and_refuses_another_evaluator(smoke_run, tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from experiments import evaluate  # pylint: disable=g-import-not-at-top
  _, workdir, _ = smoke_run
  record = outputs.read_json(workdir / "evaluator.json")
  assert {"fingerprint", "data_fingerprint", "real_fid"} <= set(record)
  result = evaluate.evaluate_checkpoint(str(workdir), variant="self_consuming", generation="1")
  recorded = result["recorded"]
  assert recorded["generation"] == 1 and result["reproduces_run"]
  assert result["metrics"]["fid"] == pytest.approx(recorded["fid"], rel=1e-5)
  assert result["metrics"]["r_precision"] == pytest.approx(recorded["r_precision"])
  assert os.path.exists(result["path"])
  # A workdir whose record names another evaluator: one line on stderr, exit code 2.
  other = tmp_path / "other"
  shutil.copytree(workdir, other, ignore=shutil.ignore_patterns("videos", "tensorboard"))
  outputs.write_json(other / "evaluator.json", dict(record, fingerprint="0" * 16))
  done = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={other}"],
                        capture_output=True, text=True, cwd=os.path.dirname(
                            os.path.dirname(os.path.abspath(__file__))), timeout=300)
  assert done.returncode == 2, done.stderr
  errors_lines = [l for l in done.stderr.splitlines() if l.startswith("error:")]
  assert len(errors_lines) == 1 and "evaluator" in errors_lines[0] and "Traceback" not in done.stderr


def test_diagnostics_reproduce_generation1_and_correction_removes_penetration(smoke_run):
  root, workdir, _ = smoke_run
  config = _smoke_config(root)
  humanml_diagnostics.main([
      f"--workdir={workdir}", "--preset=smoke", f"--seed={config.seed}",
      f"--corpus_dir={config.data.corpus_dir}", "--count=4",
      f"--override=eval.evaluator_cache={config.eval.evaluator_cache}",
      # Every motion comes back simulated (the paper's rule), resets or not.
      "--override=correction.physics.failsafe_unrealisable=keep"])
  result = outputs.read_json(workdir / "diagnostics.json")
  effect = result["correction_effect"]
  last = f"self_correcting_gen{config.loop.generations}"
  assert set(effect) >= {"real_training_motions", "generation0", last}
  for name in ("generation0", last):
    assert effect[name]["corrected"]["penetrate_mm"] < 0.1   # the simulated feet stay above
    assert effect[name]["corrected_fraction"] == 1.0
    assert effect[name]["corrected"]["velocity_jumps"] >= 0.0
    speeds = effect[name]["joint_speed_m_s"]
    assert speeds["all"] > 0 and "dropped" not in speeds   # nothing dropped under 'keep'
    toward = effect[name]["toward_data"]
    assert toward["kept"] == toward["count"] == 4   # 'keep': every motion trained on
    assert abs(toward["correction_gap"]
               - (toward["fid_corrected_kept"] - toward["fid_sampled_kept"])) < 1e-9
  # A fresh AdamW on the real motions with the loop's key is the loop's own generation 1.
  baseline_1 = next(r for r in outputs.read_jsonl(workdir / "metrics.jsonl")
                    if r["variant"] == "baseline" and r["generation"] == 1)
  optimizer = result["generation1_optimizer"]
  assert optimizer["fresh_adamw"]["fid"] == baseline_1["fid"]
  assert optimizer["carried_adamw"]["fid"] != baseline_1["fid"]


def test_visibility_flaws_reach_their_metrics_and_correction_is_scored(smoke_run):
  """The evaluator-visibility benchmark on the smoke run's corpus and evaluator (no training):
  each flaw raises the physical metric it is built to raise, every row is scored against the
  test motions, and the corrector's row covers every test motion."""
  root, workdir, _ = smoke_run
  config = _smoke_config(root)
  result = humanml_visibility.main([
      f"--workdir={workdir}", "--preset=smoke", f"--corpus_dir={config.data.corpus_dir}",
      f"--override=eval.evaluator_cache={config.eval.evaluator_cache}"])
  rows = result["rows"]
  assert set(outputs.read_json(workdir / "visibility.json")["rows"]) == set(rows)
  plain = rows["round_trip"]
  assert plain["fid_over_round_trip"] == 0.0 and plain["fid"] >= 0.0
  assert rows["bob_0.05"]["float_mm"] > plain["float_mm"] + 20
  assert rows["jitter_0.02"]["jerk"] > 5 * plain["jerk"]
  assert rows["drift_0.4"]["skate"] > plain["skate"] + 0.3
  assert rows["jitter_0.02"]["fid_over_round_trip"] > 0.0
  for row in rows.values():
    assert all(np.isfinite(v) for v in row.values() if isinstance(v, float))
  assert 0.0 <= rows["corrected"]["kept_fraction"] <= 1.0
  assert rows["real_same_size"]["motions"] == result["test_motions"]
