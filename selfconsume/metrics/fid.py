"""Frechet distance between Gaussians fitted to two sets of embeddings (FID).

FID(x, y) = |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^{1/2}).

Everything is computed in float64 with numpy. The trace of the matrix square root uses the
identity tr((S_x S_y)^{1/2}) = tr((A S_y A)^{1/2}) with A = S_x^{1/2}: A S_y A is symmetric
positive semi-definite, so its square root comes from a symmetric eigendecomposition whose
eigenvalues are clipped at zero. Unlike a general `sqrtm` of the non-symmetric product this
never returns complex parts, and it stays stable when a covariance is singular (fewer samples
than dimensions, or embeddings confined to a subspace).
"""

from __future__ import annotations

import numpy as np

from selfconsume.errors import NonFiniteError


def gaussian_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean (dim,) and unbiased covariance (dim, dim) of `embeddings` (num, dim), in float64."""
  x = np.asarray(embeddings, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"embeddings must be (num >= 2, dim), got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise NonFiniteError(f"embeddings of shape {x.shape} contain NaN or inf")
  return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
  sym = 0.5 * (matrix + matrix.T)
  eigvals, eigvecs = np.linalg.eigh(sym)
  return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr((sigma1 sigma2)^{1/2}) for symmetric PSD sigma1, sigma2 of shape (dim, dim)."""
  root1 = _psd_sqrt(np.asarray(sigma1, np.float64))
  middle = root1 @ np.asarray(sigma2, np.float64) @ root1
  eigvals = np.linalg.eigvalsh(0.5 * (middle + middle.T))
  return float(np.sqrt(np.clip(eigvals, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

  Args:
    mu1, mu2: means, (dim,).
    sigma1, sigma2: covariances, (dim, dim), symmetric positive semi-definite.

  Returns:
    The distance as a Python float, >= 0.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, "
                     f"sigma {sigma1.shape} vs {sigma2.shape}")
  diff = mu1 - mu2
  value = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
           - 2.0 * trace_sqrt_product(sigma1, sigma2))
  if not np.isfinite(value):
    raise NonFiniteError("Frechet distance is not finite")
  # Rounding can leave a tiny negative number when the two Gaussians coincide.
  return max(float(value), 0.0)


def fid(embeddings1: np.ndarray, embeddings2: np.ndarray) -> float:
  """FID between two sets of embeddings, (num1, dim) and (num2, dim)."""
  return frechet_distance(*gaussian_statistics(embeddings1), *gaussian_statistics(embeddings2))
