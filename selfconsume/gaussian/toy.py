"""The Gaussian toy experiment of the paper, as one jit-compiled `lax.scan` per grid.

Protocol (Gillman et al. 2024, Sec. 6.1 and their public code): p* = N(0, I) in d = 2; n real
samples; generation 0 is the MLE fit on them; each generation t >= 1 samples
m = floor(lambda * n) points from model t-1, corrects them (see correctors.py; gamma = 0 is
the uncorrected loop for the exact corrector), and refits on the real data plus the synthetic
data. With `accumulate`, synthetic sets pile up as in the paper's code to mimic fine-tuning:
of the g-th of G sets so far (g = 1..G), the first floor(g / G * m) points are kept.

`simulate_grid` runs many independent runs (lanes: one (seed, gamma) each) in lockstep: the
scan over generations is outside, the vmap over lanes inside.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp

from selfconsume import loop
from selfconsume.gaussian import correctors
from selfconsume.gaussian import model as gaussian_model


@dataclasses.dataclass(frozen=True)
class ToySettings:
  """Static settings of a grid of runs (they fix array shapes: compile-time constants).

  Attributes:
    num_real: n, the number of real samples.
    num_synthetic: m = floor(lambda * n), synthetic samples per generation.
    num_generations: generations after generation 0.
    corrector: 'histogram' (the paper's) or 'mixture' (pi_gamma exactly).
    accumulate: keep earlier synthetic sets (trimmed) as the paper does, or only the newest.
    dim: dimension d.
    bins: histogram bins per axis for the 'histogram' corrector.
    pool_size: rejection-sampling candidates per round.
  """
  num_real: int
  num_synthetic: int
  num_generations: int
  corrector: Literal["histogram", "mixture"] = "histogram"
  accumulate: bool = True
  dim: int = 2
  bins: int = 10
  pool_size: int = 256


def prefix_moments(points: jax.Array) -> gaussian_model.Moments:
  """Moments of the first k points of `points` (m, d) for k = 0..m: leading axis m + 1."""
  d = points.shape[1]
  zero = gaussian_model.Moments(count=jnp.zeros((1,)), total=jnp.zeros((1, d)),
                                outer=jnp.zeros((1, d, d)))
  running = gaussian_model.Moments(
      count=jnp.arange(1, points.shape[0] + 1, dtype=points.dtype),
      total=jnp.cumsum(points, axis=0),
      outer=jnp.cumsum(points[:, :, None] * points[:, None, :], axis=0))
  return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), zero, running)



def _generation(state: loop.LoopState, earlier: gaussian_model.Moments, gamma: jax.Array,
                real_moments: gaussian_model.Moments, settings: ToySettings
                ) -> tuple[loop.LoopState, jax.Array]:
  """One generation of one run; returns the new state and its W2 distance to p*.

  Args:
    state: loop state; train_state is the current Gaussian fit.
    earlier: moments of the earlier synthetic sets still in the training set.
    gamma: correction strength.
    real_moments: moments of the n real samples.
    settings: static settings.
  """
  m, d = settings.num_synthetic, settings.dim
  all_valid = jnp.ones((m,), bool)

  def sample_fn(model: gaussian_model.Gaussian, real: loop.Buffer, previous: loop.Buffer,
                key: jax.Array):
    del real, previous  # earlier sets enter through `earlier`
    return loop.Buffer(data=gaussian_model.sample(key, model, m), valid=all_valid)

  def correct_fn(key: jax.Array, synthetic: loop.Buffer):
    if settings.corrector == "histogram":
      corrected = correctors.histogram_rejection(
          key, synthetic.data, synthetic.valid, gamma, bins=settings.bins,
          pool_size=settings.pool_size)
    else:
      corrected = correctors.mixture(key, synthetic.data, gamma)
    return synthetic.replace(data=corrected), {}

  def fit_fn(model: gaussian_model.Gaussian, training_set: loop.Buffer, key: jax.Array):
    del model, key  # the MLE is closed-form: no warm start, no randomness
    # The first n slots of the training set are the real data, the rest the new synthetic set.
    newest = gaussian_model.moments(training_set.data[settings.num_real:])
    return gaussian_model.fit(real_moments + earlier + newest), {}

  # With m = floor(lambda n) = 0 there is nothing to sample: that is the baseline loop.
  variant = "self_correcting" if m > 0 else "baseline"
  state, _ = loop.run_generation(state, variant=variant, sample_fn=sample_fn,
                                 correct_fn=correct_fn, fit_fn=fit_fn)
  target = correctors.standard_normal(d)
  return state, gaussian_model.wasserstein2(state.train_state, target)


@functools.partial(jax.jit, static_argnames="settings")
def simulate_grid(keys: jax.Array, gammas: jax.Array, settings: ToySettings) -> jax.Array:
  """Independent runs of the toy loop, one per lane (key, gamma).

  Args:
    keys: (R,) PRNG keys; a key fixes a run's real data and all its sampling.
    gammas: (R,) correction strengths.
    settings: static settings.

  Returns:
    W2 distance to p* after each generation, (R, num_generations + 1), generation 0 first.
  """
  m, d = settings.num_synthetic, settings.dim
  lanes = keys.shape[0]
  target = correctors.standard_normal(d)

  def init(key):
    data_key, loop_key = jax.random.split(key)
    real = jax.random.normal(data_key, (settings.num_real, d))
    real_moments = gaussian_model.moments(real)
    model = gaussian_model.fit(real_moments)
    state = loop.init_state(
        model, real=loop.make_buffer(real),
        synthetic=loop.Buffer(data=jnp.zeros((m, d)), valid=jnp.zeros((m,), bool)),
        key=loop_key)
    return state, real_moments, gaussian_model.wasserstein2(model, target)

  states, real_moments, w2_0 = jax.vmap(init)(keys)
  num_generations = settings.num_generations
  # scheduled[G - 1] holds, per lane, the moments that the synthetic sets made so far will
  # contribute to the training set of generation G. Set g is known in full when it is made,
  # and so is its future (its first floor(g/G m) points at generation G), so it is added to
  # every later generation at once; each generation then reads one row. (Keeping the sets and
  # gathering from them instead makes XLA copy the growing history every generation.)
  scheduled = gaussian_model.Moments(
      count=jnp.zeros((num_generations, lanes)),
      total=jnp.zeros((num_generations, lanes, d)),
      outer=jnp.zeros((num_generations, lanes, d, d)))
  step = jax.vmap(functools.partial(_generation, settings=settings))
  later = jnp.arange(1, num_generations + 1)

  def body(carry, generation):
    states, scheduled = carry
    earlier = jax.tree_util.tree_map(lambda s: s[generation - 1], scheduled)
    states, w2 = step(states, earlier, gammas, real_moments)
    if settings.accumulate:
      newest = jax.vmap(prefix_moments, out_axes=1)(states.synthetic.data)  # (m + 1, lanes, ...)
      # Points of this set kept at each generation G: floor(g/G m) for G > g, none before.
      keep = jnp.where(later > generation, (generation * m) // later, 0)
      scheduled = jax.tree_util.tree_map(lambda s, p: s + p[keep], scheduled, newest)
    return (states, scheduled), w2

  generations = jnp.arange(1, settings.num_generations + 1)
  _, w2 = jax.lax.scan(body, (states, scheduled), generations)
  return jnp.concatenate([w2_0[None], w2]).T
