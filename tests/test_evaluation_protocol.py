"""The evaluation entry point: prompts, batching, determinism, and what the metrics rank."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from selfconsume.errors import ConfigError, DataError, NonFiniteError
from selfconsume.humanml import evaluation
from test_evaluator_model import _make_dataset, train_small_evaluator


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  _, evaluator, _ = train_small_evaluator(tmp_path_factory)
  test, families = _make_dataset(128, seed=1)
  return evaluator, test, families


def _config(**overrides):
  config = evaluation.smoke_config()
  config.update(overrides)
  return config


def _noisy(dataset, scale):
  """Real motions plus key-dependent noise: multimodality > 0, quality falls with scale."""
  real = evaluation.real_motion_generator(dataset)

  def generate(captions, lengths, key):
    motions = real(captions, lengths, key)
    return motions + scale * np.asarray(jax.random.normal(key, motions.shape))
  return generate


def test_same_key_same_metrics_and_noise_ranks_worse(setup):
  evaluator, test, _ = setup
  key = jax.random.PRNGKey(3)
  config = _config(num_repeats=2)
  good = evaluation.evaluate(_noisy(test, 0.1), test, evaluator, key, config)
  again = evaluation.evaluate(_noisy(test, 0.1), test, evaluator, key, config)
  assert good == again
  other_key = evaluation.evaluate(_noisy(test, 0.1), test, evaluator, jax.random.PRNGKey(4),
                                  config)
  assert other_key["multimodality"] != good["multimodality"]
  bad = evaluation.evaluate(_noisy(test, 3.0), test, evaluator, key, config)
  for name in ("fid", "r_precision_top1", "r_precision_top2", "r_precision_top3",
               "matching_score", "diversity", "multimodality"):
    assert np.isfinite(good[name]) and np.isfinite(good[f"{name}_ci95"])
  for name in ("real_r_precision_top3", "real_matching_score", "real_diversity", "real_fid"):
    assert np.isfinite(good[name])
  assert good["num_samples"] == 64 and good["num_repeats"] == 2
  assert good["fid"] < bad["fid"]
  assert good["r_precision_top3"] > bad["r_precision_top3"]
  assert good["matching_score"] < bad["matching_score"]
  assert good["multimodality"] < bad["multimodality"]
  assert good["fid_ci95"] > 0.0   # two repeats with different generation keys


def test_generate_in_batches_uses_fixed_batches_and_masks_padding():
  calls = []

  def generate(captions, lengths, key):
    calls.append((len(captions), np.asarray(key).tolist()))
    return np.ones((len(captions), 10, 263), np.float32)

  lengths = np.array([3, 10, 5, 7, 1], np.int32)
  out = evaluation.generate_in_batches(generate, list("abcde"), lengths, jax.random.PRNGKey(0),
                                       batch_size=2)
  assert [c[0] for c in calls] == [2, 2, 2]
  assert len({tuple(c[1]) for c in calls}) == 3          # a fresh key per batch
  assert out.shape == (5, 10, 263)
  np.testing.assert_array_equal(out[:, :, 0].sum(axis=1), lengths)

  def broken(captions, lengths, key):
    out = np.zeros((len(captions), 10, 263), np.float32)
    out[0, 0, 0] = np.nan
    return out
  with pytest.raises(NonFiniteError, match="1 of"):
    evaluation.generate_in_batches(broken, ["a"], np.array([5]), jax.random.PRNGKey(0), 4)


def test_prompts_are_fixed_by_seed(setup):
  _, test, _ = setup
  a = evaluation.select_prompts(test, 40, seed=0)
  b = evaluation.select_prompts(test, 40, seed=0)
  c = evaluation.select_prompts(test, 40, seed=1)
  assert a.captions == b.captions and np.array_equal(a.indices, b.indices)
  assert not np.array_equal(a.indices, c.indices)
  assert len(set(a.indices.tolist())) == 40
  assert all(cap in test.captions[i] for i, cap in zip(a.indices, a.captions))
  np.testing.assert_array_equal(a.lengths, test.lengths[a.indices])


def test_config_resolution_accepts_humanml_eval_fields():
  partial = ml_collections.ConfigDict({
      "num_samples": 16, "batch_size": 8, "num_repeats": 1, "diversity_pairs": 8,
      "multimodality_prompts": 2, "multimodality_samples": 2,
      "evaluator": ml_collections.ConfigDict(), "evaluator_cache": ""})
  resolved = evaluation.resolve_config(partial)
  assert resolved.batch_size == 8 and resolved.generate_batch_size == 64
  with pytest.raises(ConfigError, match="unknown evaluation field"):
    evaluation.resolve_config({"num_sample": 3})
  with pytest.raises(ConfigError, match="num_samples"):
    evaluation.resolve_config({"num_samples": 16, "batch_size": 32})


def test_evaluate_refuses_other_normalisation(setup):
  evaluator, test, _ = setup
  shifted = dataclasses.replace(test, mean=test.mean + 1.0)
  with pytest.raises(DataError, match="normalisation"):
    evaluation.evaluate(_noisy(test, 0.0), shifted, evaluator, jax.random.PRNGKey(0),
                        _config())
  with pytest.raises(DataError, match="normalisation"):
    evaluation.evaluator_sanity(evaluator, shifted)


def test_evaluator_sanity_separates_real_from_corrupted(setup):
  evaluator, test, families = setup
  labels = [("walks", "jumps", "waves", "kicks")[f] for f in families]
  sanity = evaluation.evaluator_sanity(evaluator, test, seed=0, families=labels)
  assert sanity == evaluation.evaluator_sanity(evaluator, test, seed=0, families=labels)
  assert sanity["fid_real_halves"] < 0.2 * sanity["fid_real_noise"]
  assert sanity["fid_halves_over_noise"] < 0.2
  assert sanity["real_r_precision_top3"] > 0.4
  assert sanity["own_caption_distance"] < sanity["other_family_caption_distance"]
  assert sanity["own_closer_than_other_family"] > 0.9
  # Shuffled frames keep each frame's pose, so the synthetic oscillations stay partly
  # recognisable; it must still be measurably farther than a second real half.
  assert sanity["fid_real_shuffled"] > sanity["fid_real_halves"]
