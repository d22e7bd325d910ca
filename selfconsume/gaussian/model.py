"""The Gaussian toy's generative model: a d-dimensional Gaussian fitted by maximum likelihood.

Fitting works from sufficient statistics (count, sum x, sum x x^T) so that a training set
that grows every generation (the paper accumulates synthetic sets) can be fitted without
touching each example again.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

# sklearn's GaussianMixture (the paper's fitter) adds this to the covariance diagonal.
COVARIANCE_REGULARIZER = 1e-6


@flax.struct.dataclass
class Gaussian:
  """N(mean, cov). mean: (d,), cov: (d, d)."""
  mean: jax.Array
  cov: jax.Array


@flax.struct.dataclass
class Moments:
  """Sufficient statistics of a weighted set of points: count (), total (d,), outer (d, d)."""
  count: jax.Array
  total: jax.Array
  outer: jax.Array

  def __add__(self, other: "Moments") -> "Moments":
    return jax.tree_util.tree_map(jnp.add, self, other)


def moments(x: jax.Array, weights: jax.Array | None = None) -> Moments:
  """Moments of the points x (N, d) with optional weights (N,) (0 drops a point)."""
  if weights is None:
    weights = jnp.ones(x.shape[:1], x.dtype)
  weights = weights.astype(x.dtype)
  return Moments(count=weights.sum(),
                 total=jnp.einsum("n,nd->d", weights, x),
                 outer=jnp.einsum("n,nd,ne->de", weights, x, x))


def fit(stats: Moments) -> Gaussian:
  """The maximum-likelihood Gaussian: sample mean and biased (1/N) sample covariance."""
  mean = stats.total / stats.count
  cov = stats.outer / stats.count - jnp.outer(mean, mean)
  cov = 0.5 * (cov + cov.T) + COVARIANCE_REGULARIZER * jnp.eye(mean.shape[0], dtype=cov.dtype)
  return Gaussian(mean=mean, cov=cov)


def fit_points(x: jax.Array, weights: jax.Array | None = None) -> Gaussian:
  """MLE fit of the points x (N, d), optionally weighted (N,)."""
  return fit(moments(x, weights))


def sample(key: jax.Array, model: Gaussian, num: int) -> jax.Array:
  """`num` samples (num, d) of N(mean, cov)."""
  chol = jnp.linalg.cholesky(model.cov)
  z = jax.random.normal(key, (num, model.mean.shape[0]), model.mean.dtype)
  return model.mean + z @ chol.T


def log_density(model: Gaussian, x: jax.Array) -> jax.Array:
  """log N(x; mean, cov) for x (..., d)."""
  d = model.mean.shape[0]
  chol = jnp.linalg.cholesky(model.cov)
  z = jax.scipy.linalg.solve_triangular(chol, (x - model.mean).T, lower=True).T
  log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
  return -0.5 * (jnp.sum(z**2, axis=-1) + log_det + d * jnp.log(2 * jnp.pi))


def sqrtm_psd(matrix: jax.Array) -> jax.Array:
  """Square root of a symmetric positive semi-definite matrix, by eigendecomposition."""
  values, vectors = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
  return (vectors * jnp.sqrt(jnp.clip(values, 0.0))) @ vectors.T


def wasserstein2(p: Gaussian, q: Gaussian) -> jax.Array:
  """Closed-form 2-Wasserstein distance between two Gaussians.

  W2^2 = |m_p - m_q|^2 + tr(S_p + S_q - 2 (S_q^1/2 S_p S_q^1/2)^1/2).
  """
  root_q = sqrtm_psd(q.cov)
  cross = sqrtm_psd(root_q @ p.cov @ root_q)
  squared = jnp.sum((p.mean - q.mean)**2) + jnp.trace(p.cov + q.cov - 2.0 * cross)
  return jnp.sqrt(jnp.clip(squared, 0.0))
