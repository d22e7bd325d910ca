"""FID: closed-form values, agreement with sampling, and numerical robustness."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from selfconsume.errors import NonFiniteError
from selfconsume.metrics import fid as fid_lib


def _random_spd(rng, dim, scale=1.0):
  a = rng.normal(size=(dim, dim))
  return scale * (a @ a.T / dim + 0.1 * np.eye(dim))


def _frechet_reference(mu1, s1, mu2, s2):
  # Textbook formula with a general matrix square root of the (non-symmetric) product.
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_closed_forms():
  rng = np.random.default_rng(0)
  dim = 6
  mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
  # Same covariance: the distance is the squared mean difference.
  s = _random_spd(rng, dim)
  assert fid_lib.frechet_distance(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2))
  # Isotropic covariances a^2 I and b^2 I: dim * (a - b)^2.
  eye = np.eye(dim)
  assert fid_lib.frechet_distance(mu1, 4 * eye, mu1, 9 * eye) == pytest.approx(dim * 1.0)
  # General SPD pair: agrees with the textbook formula.
  s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim, 3.0)
  assert fid_lib.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
      _frechet_reference(mu1, s1, mu2, s2), rel=1e-8)
  # Symmetric in its arguments, zero on itself.
  assert fid_lib.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
      fid_lib.frechet_distance(mu2, s2, mu1, s1), rel=1e-8)
  assert fid_lib.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_samples_converges_to_closed_form():
  rng = np.random.default_rng(1)
  dim = 4
  mu1, mu2 = np.zeros(dim), np.full(dim, 0.5)
  s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim, 2.0)
  exact = fid_lib.frechet_distance(mu1, s1, mu2, s2)
  n = 100_000
  x = rng.multivariate_normal(mu1, s1, size=n)
  y = rng.multivariate_normal(mu2, s2, size=n)
  # Sampling error of the moments at n = 1e5 is ~1e-2 relative to unit-scale entries.
  assert fid_lib.fid(x, y) == pytest.approx(exact, rel=0.03, abs=0.01)
  # Two samples of one Gaussian: FID is small, well below the distance between the two laws.
  x2 = rng.multivariate_normal(mu1, s1, size=n)
  assert fid_lib.fid(x, x2) < 0.01 * exact


def test_fid_is_finite_and_nonnegative_for_singular_covariances():
  rng = np.random.default_rng(2)
  # 20 samples in 64 dimensions: both covariances have rank <= 19.
  x = rng.normal(size=(20, 64))
  y = rng.normal(size=(20, 64)) + 0.3
  value = fid_lib.fid(x, y)
  assert np.isfinite(value) and value > 0
  # Embeddings confined to a 3-d subspace (exactly singular covariance) against themselves.
  basis = rng.normal(size=(3, 32))
  z = rng.normal(size=(200, 3)) @ basis
  assert fid_lib.fid(z, z) == pytest.approx(0.0, abs=1e-6)
  # Float32 input is promoted; the result matches the float64 computation.
  assert fid_lib.fid(x.astype(np.float32), y) == pytest.approx(
      fid_lib.fid(x.astype(np.float32).astype(np.float64), y), rel=1e-12)


def test_fid_rejects_bad_input():
  with pytest.raises(NonFiniteError):
    fid_lib.fid(np.array([[0.0, np.nan], [1.0, 2.0]]), np.ones((2, 2)))
  with pytest.raises(ValueError, match="shape"):
    fid_lib.fid(np.ones((5, 3)), np.ones((5, 4)))
