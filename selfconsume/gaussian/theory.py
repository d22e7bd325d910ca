"""Theorem 4.3 of Gillman et al. (2024) made concrete for the Gaussian toy.

The theorem (building on Bertrand et al. 2024) bounds the distance of the self-correcting
loop's parameters to the optimum by a geometric sequence: per generation the error contracts
by

    rho(lambda) / (1 + gamma),   rho(lambda) = lambda (alpha + eps L) / (alpha - lambda (alpha + eps L)),

up to a statistical term, provided lambda (alpha + eps L) < alpha. Without correction
(gamma = 0) the loop is stable only when rho(lambda) < 1; with correction whenever
rho(lambda) < 1 + gamma, so correction enlarges the stable region.

Constants for the Gaussian MLE (parameters theta = (mean, covariance), data p* = N(0, I)):

* alpha — strong concavity of theta -> E_{x~p*} log p_theta(x) at the optimum. For the mean
  block the Hessian is -Sigma^-1 = -I, so alpha = 1 (the covariance block is 1/2-strongly
  concave in Sigma at Sigma = I; we use the mean block, which sets the slowest mode that the
  theorem's mean-parameter argument tracks).
* L — Lipschitz constant of x -> grad_theta log p_theta(x) (how far the optimum moves when
  the data distribution moves, in Wasserstein-1): grad_mean = Sigma^-1 (x - mean), so L = 1.
* eps — how far the model class's best fit on finite data is from p*: the expected W2
  distance of the n-sample MLE to p*, which for d = 2 is about sqrt(d/n + d(d+1)/(4n))
  (mean error d/n plus the covariance-root error); `generalization_error` computes it.

With n = 50 these give eps ~ 0.26 and rho(0.5) ~ 1.7: the theorem cannot certify the
uncorrected loop at the paper's lambda = 0.5, although the measured loop does not diverge:
the bound is sufficient, not necessary. It does predict the qualitative result — the
contraction factor falls as 1 / (1 + gamma), so larger gamma converges faster and to a lower
error — which the notebook compares with the measured curves.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 1.0
LIPSCHITZ = 1.0


def generalization_error(num_real: int, dim: int = 2) -> float:
  """eps: approximate expected W2 between the n-sample Gaussian MLE and p* = N(0, I).

  E|mean_hat|^2 = d / n, and for the covariance E|Sigma_hat^1/2 - I|_F^2 ~ E|Sigma_hat - I|_F^2 / 4
  = d (d + 1) / (4 n) to first order.
  """
  return math.sqrt(dim / num_real + dim * (dim + 1) / (4 * num_real))


def rho(synthetic_ratio, alpha: float = ALPHA, eps: float = 0.0, lipschitz: float = LIPSCHITZ):
  """rho(lambda) = lambda (alpha + eps L) / (alpha - lambda (alpha + eps L)); inf where undefined."""
  lam = np.asarray(synthetic_ratio, np.float64)
  c = lam * (alpha + eps * lipschitz)
  with np.errstate(divide="ignore", invalid="ignore"):
    value = np.where(c < alpha, c / (alpha - c), np.inf)
  return value


def contraction_factor(synthetic_ratio, gamma, alpha: float = ALPHA, eps: float = 0.0,
                       lipschitz: float = LIPSCHITZ):
  """The theorem's per-generation factor rho(lambda) / (1 + gamma)."""
  return rho(synthetic_ratio, alpha, eps, lipschitz) / (1.0 + np.asarray(gamma, np.float64))


def stability_boundary(gamma, alpha: float = ALPHA, eps: float = 0.0,
                       lipschitz: float = LIPSCHITZ):
  """The largest lambda the theorem certifies for a given gamma (factor < 1).

  rho(lambda) = 1 + gamma  <=>  lambda = (1 + gamma) alpha / ((2 + gamma)(alpha + eps L)).
  """
  gamma = np.asarray(gamma, np.float64)
  return (1.0 + gamma) * alpha / ((2.0 + gamma) * (alpha + eps * lipschitz))


def predicted_error(initial_error: float, synthetic_ratio: float, gamma, num_generations: int,
                    alpha: float = ALPHA, eps: float = 0.0, lipschitz: float = LIPSCHITZ,
                    floor: float = 0.0) -> np.ndarray:
  """The bound's geometric decay factor^t * e_0 (+ a floor), for t = 0..num_generations.

  Returns inf-free curves: where the factor is >= 1 the bound is vacuous and the curve grows.
  """
  factor = np.asarray(contraction_factor(synthetic_ratio, gamma, alpha, eps, lipschitz))
  t = np.arange(num_generations + 1)
  with np.errstate(over="ignore"):
    return floor + initial_error * np.power.outer(np.minimum(factor, 1e6), t)
