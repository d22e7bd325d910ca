"""The seeds benchmark's statistics: intervals over seeds, the claims, the noise summaries."""

import json

import numpy as np
import pytest
from scipy import stats

from benchmarks import humanml_diagnostics
from benchmarks import humanml_seeds


def _runs(fids):
  """per_seed rows: seed -> variant -> generation -> metrics, FID from `fids[seed][variant]`."""
  out = {}
  for seed, by_variant in fids.items():
    out[seed] = {}
    for variant, curve in by_variant.items():
      out[seed][variant] = {g: {"fid": f, "float_mm": 5.0 + g, "penetrate_mm": 1.0,
                                "skate": 0.1} for g, f in enumerate(curve)}
  return out


def test_t_interval_uses_student_t():
  mean, half = humanml_seeds.t_interval([1.0, 2.0, 3.0])
  assert mean == pytest.approx(2.0)
  assert half == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3))
  assert humanml_seeds.t_interval([4.0]) == (4.0, 0.0)


def test_aggregate_means_over_seeds_per_generation():
  per_seed = _runs({0: {"baseline": [1.0, 0.8], "self_consuming": [1.0, 1.2],
                        "self_correcting": [1.0, 0.9]},
                    1: {"baseline": [1.2, 0.6], "self_consuming": [1.2, 1.6],
                        "self_correcting": [1.2, 1.1]}})
  rows = humanml_seeds.aggregate(per_seed, n=64, ratio=1.0)
  last = {r["variant"]: r for r in rows if r["generation"] == 1}
  assert last["self_consuming"]["fid"] == pytest.approx(1.4)
  assert last["self_consuming"]["fid_ci95"] == pytest.approx(
      stats.t.ppf(0.975, 1) * np.std([1.2, 1.6], ddof=1) / np.sqrt(2))
  assert last["baseline"]["lambda"] == 0.0 and last["self_correcting"]["lambda"] == 1.0
  assert "resets" not in last["self_correcting"]   # a metric no seed has is left out


def test_claims_and_run_noise():
  per_seed = _runs({0: {"baseline": [1.0, 0.8, 0.7, 0.9], "self_consuming": [1.0, 1.2, 1.3, 1.4],
                        "self_correcting": [1.0, 0.9, 1.5, 1.5]}})
  last = {v: per_seed[0][v][3] for v in humanml_seeds.VARIANTS}
  held = humanml_seeds.claims(last)
  assert held["consuming_fid_above_baseline"]
  assert not held["correcting_fid_below_consuming"]
  assert held["correcting_float_mm_no_worse"]          # equal counts as no worse
  noise = humanml_seeds.run_noise(per_seed, 3)
  # Baseline's changes between generations 1 -> 2 -> 3: -0.1, +0.2.
  assert noise["baseline_generation_to_generation_fid_sd"] == pytest.approx(
      np.std([-0.1, 0.2], ddof=1))


def test_markdown_table_lists_generation0_and_the_last_generation():
  per_seed = _runs({s: {"baseline": [1.0, 0.8], "self_consuming": [1.0, 1.2],
                        "self_correcting": [1.0, 0.9]} for s in (0, 1)})
  rows = humanml_seeds.aggregate(per_seed, n=64, ratio=1.0)
  text = humanml_seeds.markdown(rows, {"consuming_fid_above_baseline": 2}, [0, 1], 1)
  body = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
  assert [line.split("|")[1].strip() for line in body[1:]] == [
      "generation 0", "baseline", "self_consuming", "self_correcting"]
  assert "1.200 +- 0.000" in text


def test_per_seed_table_has_each_seeds_curves_and_corrected_shares():
  per_seed = _runs({s: {"baseline": [1.0, 0.8 + s], "self_consuming": [1.0, 1.2],
                        "self_correcting": [1.0, 0.9]} for s in (0, 3)})
  per_seed[3]["self_correcting"][1]["corrected_fraction"] = 0.25
  text = humanml_seeds.per_seed_markdown(per_seed, 1)
  body = [line.split("|")[1:-1] for line in text.splitlines()[2:]]
  assert [(c[0].strip(), c[1].strip()) for c in body] == [
      (str(s), v) for s in (0, 3) for v in humanml_seeds.VARIANTS]
  seed3 = {c[1].strip(): [x.strip() for x in c[2:]] for c in body if c[0].strip() == "3"}
  # Generation 0 is shared: shown once, on baseline's line.
  assert seed3["baseline"][:2] == ["1.000", "3.800"]
  assert seed3["self_consuming"][:2] == ["", "1.200"]
  # float, penetrate, skate at the last generation (diversity absent here), corrected share.
  assert seed3["self_correcting"][2:] == ["6.0", "1.0", "0.10", "", "0.25"]
  assert seed3["self_consuming"][-1] == ""


def test_tables_and_claims_for_a_run_without_baseline():
  # --override=loop.variants=self_consuming,self_correcting: the claims that need baseline
  # are left out, generation 0 comes from the first variant that ran.
  per_seed = _runs({s: {"self_consuming": [1.0, 1.2 + s], "self_correcting": [1.0, 0.9]}
                    for s in (3, 4)})
  last = {v: c[1] for v, c in per_seed[3].items()}
  assert set(humanml_seeds.claims(last)) == {
      "correcting_fid_below_consuming", "correcting_float_mm_no_worse",
      "correcting_penetrate_mm_no_worse", "correcting_skate_no_worse"}
  noise = humanml_seeds.run_noise(per_seed, 1)
  assert set(noise["seed_to_seed_fid_sd"]) == {"self_consuming", "self_correcting"}
  assert noise["baseline_generation_to_generation_fid_sd"] is None
  rows = humanml_seeds.aggregate(per_seed, n=64, ratio=1.0)
  text = humanml_seeds.markdown(rows, {"correcting_fid_below_consuming": 2}, [3, 4], 1)
  names = [line.split("|")[1].strip() for line in text.splitlines()
           if line.startswith("| ") and "---" not in line][1:]
  assert names == ["generation 0", "self_consuming", "self_correcting"]
  per_seed_lines = humanml_seeds.per_seed_markdown(per_seed, 1).splitlines()[2:]
  cells = [[c.strip() for c in line.split("|")[1:-1]] for line in per_seed_lines]
  assert [(c[0], c[1], c[2]) for c in cells] == [
      ("3", "self_consuming", "1.000"), ("3", "self_correcting", ""),
      ("4", "self_consuming", "1.000"), ("4", "self_correcting", "")]


def test_evaluation_noise_is_scored_once_per_checkpoint(tmp_path, monkeypatch):
  calls = []

  def fake_noise(config, workdir, n, generation, repeats):
    calls.append((workdir, generation, repeats))
    return {"keys": {"fid": [0.5] * repeats}}

  monkeypatch.setattr(humanml_seeds, "evaluation_noise", fake_noise)
  seed_dir = tmp_path / "seed_0"
  seed_dir.mkdir()
  (seed_dir / "identity.json").write_text(json.dumps({"config_fingerprint": "abc", "config": {}}))
  first = humanml_seeds.cached_evaluation_noise(None, str(tmp_path), str(seed_dir), 64, 4, 3)
  again = humanml_seeds.cached_evaluation_noise(None, str(tmp_path), str(seed_dir), 64, 4, 3)
  assert first == again and len(calls) == 1
  # Another checkpoint (generation), more repeats or another run's config: scored anew.
  humanml_seeds.cached_evaluation_noise(None, str(tmp_path), str(seed_dir), 64, 3, 3)
  humanml_seeds.cached_evaluation_noise(None, str(tmp_path), str(seed_dir), 64, 3, 4)
  (seed_dir / "identity.json").write_text(json.dumps({"config_fingerprint": "def", "config": {}}))
  humanml_seeds.cached_evaluation_noise(None, str(tmp_path), str(seed_dir), 64, 3, 4)
  assert len(calls) == 4


def test_velocity_jumps_shows_a_teleport_that_averages_hide():
  frames, lengths = 40, np.array([40, 30])
  t = np.linspace(0.0, 1.0, frames)
  smooth = np.zeros((2, frames, 263))
  smooth[:, :, 193:259] = np.sin(2 * np.pi * t)[None, :, None]
  jumped = smooth.copy()
  jumped[0, 20, 193:259] += 5.0            # one frame of velocity: a reset's teleport
  jumped[1, 35, 193:259] += 5.0            # beyond motion 1's length: ignored
  std = np.ones(263)
  calm = humanml_diagnostics.velocity_jumps(smooth, lengths, std)
  spiked = humanml_diagnostics.velocity_jumps(jumped, lengths, std)
  assert calm < 0.02
  # Motion 0's three second differences around frame 20 carry 5 + 10 + 5 over 38 of them.
  assert abs(spiked - calm - 0.5 * 20.0 / 38) < 0.01


def test_joint_speed_counts_only_valid_frames():
  frames = 30
  joints = np.zeros((2, frames, 22, 3))
  joints[0, :, :, 0] = np.arange(frames)[:, None] * 0.1   # every joint 0.1 m per frame
  joints[1, 10:, :, 0] = 5.0                              # still, then a jump past its length
  speeds = humanml_diagnostics.joint_speed(joints, np.array([frames, 10]))
  np.testing.assert_allclose(speeds, [0.1 * 20, 0.0])     # 20 frames per second


def test_toward_data_separates_the_correction_from_the_selection():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(600, 6))
  sampled = rng.normal(size=(160, 6)) + 1.0       # the samples sit one unit off the data
  # Kept: the half nearest the data; corrected: every sample moved halfway back.
  kept = np.linalg.norm(sampled, axis=1) < np.median(np.linalg.norm(sampled, axis=1))
  out = humanml_diagnostics.toward_data(sampled, sampled - 0.5, kept, real,
                                        np.random.default_rng(1), draws=100,
                                        reference=rng.normal(size=(400, 6)))
  assert out["kept"] == 80 and out["count"] == 160
  # |mean shift|^2 falls from about 6 x 1 to 6 x 0.25 for the kept set: a gap of about -4.5.
  assert out["correction_gap"] < -2.0
  assert out["correction_gap"] + out["correction_gap_ci95"] < 0
  assert out["selection_gap"] < 0 and out["selection_p"] < 0.05
  assert out["fid_real_same_size"] < out["fid_corrected_kept"] < out["fid_sampled_kept"]
  # A corrector that changes nothing and keeps everything moves nothing.
  same = humanml_diagnostics.toward_data(sampled, sampled, np.ones(160, bool), real,
                                         np.random.default_rng(1), draws=20)
  assert same["correction_gap"] == 0.0 and same["correction_gap_ci95"] == 0.0
  assert "selection_gap" not in same and same["fid_sampled"] == same["fid_sampled_kept"]


def _seeds_json(path, fids, generations=1):
  """A seeds.json as the benchmark writes it (JSON turns the generation keys into strings)."""
  path.write_text(json.dumps({"generations": generations, "per_seed": _runs(fids)}))
  return str(path)


def test_pool_pairs_the_seeds_of_several_runs(tmp_path):
  first = _seeds_json(tmp_path / "a.json", {
      0: {"baseline": [1.0, 0.8], "self_consuming": [1.0, 1.2], "self_correcting": [1.0, 0.9]},
      1: {"baseline": [1.0, 0.7], "self_consuming": [1.0, 0.9], "self_correcting": [1.0, 1.0]}})
  # Held-out seeds run later without baseline.
  second = _seeds_json(tmp_path / "b.json", {
      5: {"self_consuming": [1.0, 1.5], "self_correcting": [1.0, 1.1]},
      6: {"self_consuming": [1.0, 1.3], "self_correcting": [1.0, 1.0]}})
  result = humanml_seeds.pool([first, second], str(tmp_path / "out"))
  assert result["seeds"] == [0, 1, 5, 6]
  assert result["claims_held_in_seeds"]["correcting_fid_below_consuming"] == 3
  assert result["claims_tested_in_seeds"] == {
      "consuming_fid_above_baseline": 2, "correcting_fid_below_consuming": 4,
      "correcting_float_mm_no_worse": 4, "correcting_penetrate_mm_no_worse": 4,
      "correcting_skate_no_worse": 4}
  gap = result["gaps"]["self_consuming-self_correcting:fid"]
  np.testing.assert_allclose(gap["gaps"], [0.3, -0.1, 0.4, 0.3])
  assert gap["positive"] == 3
  assert gap["mean"] == pytest.approx(0.225)
  assert gap["ci95"] == pytest.approx(
      stats.t.ppf(0.975, 3) * np.std([0.3, -0.1, 0.4, 0.3], ddof=1) / 2)
  assert gap["wilcoxon_p"] == pytest.approx(stats.wilcoxon([0.3, -0.1, 0.4, 0.3]).pvalue)
  assert result["gaps"]["self_consuming-baseline:fid"]["seeds"] == [0, 1]
  np.testing.assert_allclose(result["gaps"]["self_correcting-baseline:fid"]["gaps"], [0.1, 0.3])
  text = (tmp_path / "out" / "pooled.md").read_text()
  assert "| self_consuming-self_correcting:fid | 4 | 0.225 +- " in text
  assert "correcting_fid_below_consuming 3 of 4" in text


def test_pool_refuses_a_seed_twice_and_runs_of_different_lengths(tmp_path):
  runs = {0: {"self_consuming": [1.0, 1.2], "self_correcting": [1.0, 0.9]}}
  first = _seeds_json(tmp_path / "a.json", runs)
  with pytest.raises(SystemExit, match="seed 0 is also in an earlier file"):
    humanml_seeds.pool([first, _seeds_json(tmp_path / "b.json", runs)], str(tmp_path / "o"))
  longer = _seeds_json(tmp_path / "c.json", {1: {"self_consuming": [1.0, 1.2, 1.3]}}, 2)
  with pytest.raises(SystemExit, match="c.json: last generation 2, the files before it 1"):
    humanml_seeds.pool([first, longer], str(tmp_path / "o"))
