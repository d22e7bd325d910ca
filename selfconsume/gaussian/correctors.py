"""Correction functions for the Gaussian toy: two realisations of pi_gamma.

The correction operator of the paper is pi_gamma p = (p + gamma p*) / (1 + gamma). Given a
synthetic set drawn from p, both functions here return a set of the same size drawn (close
to) pi_gamma p, with t = gamma / (1 + gamma):

* `histogram_rejection` — the paper's idealised corrector: rejection sampling from
  (1 - t) * h + t * p*, where h is the 10 x 10 histogram density of the synthetic set. Like
  the paper's code, the proposal is p* and the envelope constant is
  M = ((1 - t) max h + t p*(0)) / p*(0); this M is not a true bound away from the mode, so
  the accepted points follow the target only approximately (it is the published protocol).
* `mixture` — pi_gamma p exactly: each sample is kept with probability 1 / (1 + gamma) and
  otherwise replaced by a fresh draw from p*.

Both are pure and jit/vmap-able. `valid` masks let one compiled function serve several
synthetic set sizes (a vmap over lambda): only the first `num_valid` rows are meaningful.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from selfconsume import loop
from selfconsume.gaussian import model as gaussian_model


def _standard_normal_density(x: jax.Array) -> jax.Array:
  d = x.shape[-1]
  return jnp.exp(-0.5 * jnp.sum(x**2, axis=-1)) / (2 * jnp.pi)**(d / 2)


def histogram_density(points: jax.Array, valid: jax.Array, bins: int
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The 2-D histogram density of the valid points, as numpy.histogram2d(density=True).

  Args:
    points: (m, 2).
    valid: bool (m,).
    bins: bins per axis; the range is the points' min..max on each axis.

  Returns:
    density (bins, bins) indexed [x_bin, y_bin], lower edges (2,), bin widths (2,).
  """
  big = jnp.finfo(points.dtype).max
  low = jnp.min(jnp.where(valid[:, None], points, big), axis=0)
  high = jnp.max(jnp.where(valid[:, None], points, -big), axis=0)
  width = jnp.maximum(high - low, 1e-6) / bins
  index = _bin_index(points, low, width)
  # numpy puts a point on the upper edge into the last bin.
  index = jnp.clip(index, 0, bins - 1)
  flat = index[:, 0] * bins + index[:, 1]
  counts = jnp.zeros(bins * bins, points.dtype).at[flat].add(valid.astype(points.dtype))
  density = counts / (jnp.maximum(counts.sum(), 1.0) * width[0] * width[1])
  return density.reshape(bins, bins), low, width


def _bin_index(points, low, width):
  return jnp.floor((points - low) / width).astype(jnp.int32)


def histogram_rejection(key: jax.Array, points: jax.Array, valid: jax.Array,
                        gamma: jax.Array, *, bins: int = 10, pool_size: int = 256
                        ) -> jax.Array:
  """The paper's idealised corrector (see module docstring). Target p* = N(0, I).

  Args:
    key: PRNG key.
    points: (m, 2) synthetic samples; rows with valid = False are ignored.
    valid: bool (m,).
    gamma: correction strength >= 0.
    bins: histogram bins per axis.
    pool_size: candidates proposed per round of the rejection loop.

  Returns:
    (m, 2) corrected samples; the first sum(valid) rows are the accepted draws.
  """
  m, d = points.shape
  t = loop.correction_probability(gamma)
  density, low, width = histogram_density(points, valid, bins)
  peak_target = _standard_normal_density(jnp.zeros((d,), points.dtype))
  envelope = ((1 - t) * density.max() + t * peak_target) / peak_target
  num_needed = jnp.sum(valid.astype(jnp.int32))

  def target_density(x):
    index = _bin_index(x, low, width)
    inside = jnp.all((index >= 0) & (index < bins), axis=-1)
    clipped = jnp.clip(index, 0, bins - 1)
    empirical = jnp.where(inside, density.reshape(-1)[clipped[:, 0] * bins + clipped[:, 1]], 0.0)
    return (1 - t) * empirical + t * _standard_normal_density(x)

  def cond(carry):
    _, _, count = carry
    return count < num_needed

  def body(carry):
    key, accepted, count = carry
    key, propose_key, accept_key = jax.random.split(key, 3)
    candidates = jax.random.normal(propose_key, (pool_size, d), points.dtype)
    ratio = target_density(candidates) / (envelope * _standard_normal_density(candidates))
    accept = jax.random.uniform(accept_key, (pool_size,)) < ratio
    # Accepted candidates fill the next free rows in proposal order; the rest are dropped
    # (written out of bounds, which scatter ignores).
    slot = count + jnp.cumsum(accept) - 1
    slot = jnp.where(accept & (slot < num_needed), slot, m)
    accepted = accepted.at[slot].set(candidates, mode="drop")
    return key, accepted, jnp.minimum(count + accept.sum(), num_needed)

  _, accepted, _ = jax.lax.while_loop(
      cond, body, (key, jnp.zeros_like(points), jnp.zeros((), jnp.int32)))
  return accepted


def mixture(key: jax.Array, points: jax.Array, gamma: jax.Array) -> jax.Array:
  """pi_gamma exactly: keep each point w.p. 1/(1+gamma), else redraw it from p* = N(0, I)."""
  fresh_key, replace_key = jax.random.split(key)
  fresh = jax.random.normal(fresh_key, points.shape, points.dtype)
  corrected, _ = loop.replace_with_probability(replace_key, points, fresh, gamma)
  return corrected


def standard_normal(dim: int) -> gaussian_model.Gaussian:
  """p* of the toy: N(0, I)."""
  return gaussian_model.Gaussian(mean=jnp.zeros((dim,)), cov=jnp.eye(dim))
