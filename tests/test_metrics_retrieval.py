"""R-precision, matching score, diversity, multimodality and repeat intervals."""

from __future__ import annotations

import numpy as np
import pytest

from selfconsume.metrics import diversity as diversity_lib
from selfconsume.metrics import intervals
from selfconsume.metrics import retrieval


def test_r_precision_is_one_for_perfect_pairs_and_near_chance_for_random():
  rng = np.random.default_rng(0)
  motion = rng.normal(size=(320, 16))
  top = retrieval.r_precision(motion + 1e-3 * rng.normal(size=motion.shape), motion)
  np.testing.assert_allclose(top, [1.0, 1.0, 1.0])
  # Independent texts: each k-nearest hit has probability k / 32.
  random_top = retrieval.r_precision(rng.normal(size=(32 * 200, 16)),
                                     rng.normal(size=(32 * 200, 16)))
  np.testing.assert_allclose(random_top, np.arange(1, 4) / 32, atol=0.015)
  assert np.all(np.diff(random_top) > 0)


def test_r_precision_counts_ranks_within_groups_of_32():
  # Group of 32 one-dimensional points; text i sits between motion i and motion i + 1 but
  # nearer to motion i + 1 for odd i < 31, so those 15 texts rank their own motion second.
  motion = np.arange(32, dtype=np.float64)[:, None]
  text = motion.copy()
  text[1::2] += 0.6
  top = retrieval.r_precision(text, motion)
  np.testing.assert_allclose(top, [17 / 32, 1.0, 1.0])
  # A trailing incomplete group is dropped.
  padded_t = np.concatenate([text, np.full((5, 1), 100.0)])
  padded_m = np.concatenate([motion, np.zeros((5, 1))])
  np.testing.assert_allclose(retrieval.r_precision(padded_t, padded_m), top)
  with pytest.raises(ValueError, match="at least 32"):
    retrieval.r_precision(text[:31], motion[:31])


def test_matching_score_and_pairwise_distances():
  a = np.array([[0.0, 0.0], [3.0, 4.0]])
  b = np.array([[0.0, 1.0], [0.0, 0.0]])
  assert retrieval.matching_score(a, b) == pytest.approx((1.0 + 5.0) / 2)
  np.testing.assert_allclose(retrieval.pairwise_distances(a, b),
                             [[1.0, 0.0], [np.sqrt(18.0), 5.0]])


def test_diversity_and_multimodality():
  rng = np.random.default_rng(1)
  # Standard normal in d dims: E|x - y| ~ sqrt(2 d) for independent x, y.
  x = rng.normal(size=(2000, 50))
  value = diversity_lib.diversity(x, np.random.default_rng(0))
  assert value == pytest.approx(np.sqrt(100.0), rel=0.05)
  assert diversity_lib.diversity(x, np.random.default_rng(0)) == value  # same rng -> same
  with pytest.raises(ValueError, match="300"):
    diversity_lib.diversity(x[:100], np.random.default_rng(0))
  # Repeats that are identical per prompt have zero multimodality; scaled noise scales it.
  prompts = rng.normal(size=(8, 1, 50))
  same = np.repeat(prompts, 20, axis=1)
  assert diversity_lib.multimodality(same, np.random.default_rng(0)) == 0.0
  noisy = same + 0.1 * rng.normal(size=same.shape)
  mm = diversity_lib.multimodality(noisy, np.random.default_rng(0))
  # Pairs may repeat an index (distance 0), so the mean lies between 0 and 0.1 * sqrt(100).
  assert 0.3 < mm <= 1.05


def test_mean_and_interval():
  mean, half = intervals.mean_and_interval([1.0, 3.0])
  assert mean == 2.0 and half == pytest.approx(1.96 * 1.0 / np.sqrt(2))
  assert intervals.mean_and_interval([5.0]) == (5.0, 0.0)
  summary = intervals.summarize_repeats([{"fid": 1.0}, {"fid": 3.0}])
  assert summary == {"fid": 2.0, "fid_ci95": pytest.approx(half)}
