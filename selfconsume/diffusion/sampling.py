"""Reverse-process samplers (DDPM ancestral, DDIM) over a respaced schedule, and guidance.

Both samplers run as one `lax.scan` over the K respaced steps, so a whole sampling loop
compiles once. The model is always queried at the ORIGINAL training timesteps (0..T-1).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from selfconsume.diffusion.gaussian_diffusion import PREDICTIONS
from selfconsume.diffusion.gaussian_diffusion import PredictFn
from selfconsume.diffusion.schedules import Schedule
from selfconsume.diffusion.schedules import respace
from selfconsume.errors import ConfigError

METHODS = ("ddim", "ddpm")


def guided(predict_cond: PredictFn, predict_uncond: PredictFn, scale: float) -> PredictFn:
  """Classifier-free guidance: uncond + scale * (cond - uncond) (Ho & Salimans 2022).

  scale = 1 is the conditional model; MDM samples with scale 2.5. A DDPM written with a
  guidance weight w, (1 + w) cond - w uncond, is scale = 1 + w.
  """
  def predict_fn(x_t: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    uncond = predict_uncond(x_t, t)
    return uncond + scale * (predict_cond(x_t, t) - uncond)
  return predict_fn


def _bcast(v: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """A scalar coefficient as shape (1, ..., 1) of rank `ndim`."""
  return jnp.reshape(v, (1,) * ndim)


def sample(predict_fn: PredictFn, schedule: Schedule, shape: Sequence[int], key: jax.Array,
           *, prediction: str = "x0", method: str = "ddim", num_steps: int = 50,
           eta: float = 0.0, clip_x0: float | None = None,
           x_T: jnp.ndarray | None = None,
           mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Draws x0 samples by running the reverse process from pure noise.

  Args:
    predict_fn: (x_t (B, ...), t (B,) int32 in 0..T-1) -> x0 or eps prediction (B, ...).
    schedule: the training schedule (T steps).
    shape: the sample shape (B, ...), e.g. (64, 196, 263).
    key: PRNG key.
    prediction: what predict_fn returns, 'x0' or 'eps'.
    method: 'ddim' (Song et al. 2021; eta = 0 is deterministic given the initial noise) or
      'ddpm' (ancestral sampling with the posterior variance, on the respaced schedule).
    num_steps: K, the number of respaced sampling steps (<= T).
    eta: DDIM's stochasticity (ignored by 'ddpm').
    clip_x0: if set, the x0 estimate is clipped to [-clip_x0, clip_x0] at every step (images).
    x_T: optional initial noise (shape); drawn from `key` otherwise.
    mask: optional, 1 where entries are real; (B, frames) or broadcastable to `shape`. Masked
      entries are zeroed in every x_t and in the result.
  Returns:
    x0 samples of `shape`, float32.
  """
  if prediction not in PREDICTIONS:
    raise ConfigError(f"diffusion prediction must be one of {PREDICTIONS}, got {prediction!r}")
  if method not in METHODS:
    raise ConfigError(f"sampling method must be one of {METHODS}, got {method!r}")
  shape = tuple(shape)
  ndim = len(shape)
  spaced, timesteps = respace(schedule, num_steps)
  timesteps = jnp.asarray(timesteps, jnp.int32)
  init_key, loop_key = jax.random.split(key)
  x = jax.random.normal(init_key, shape, jnp.float32) if x_T is None else x_T
  if mask is not None:
    m = jnp.asarray(mask, jnp.float32)
    if m.ndim < ndim:
      m = m.reshape(m.shape + (1,) * (ndim - m.ndim))
    m = jnp.broadcast_to(m, shape)
  else:
    m = None

  def apply_mask(v):
    return v if m is None else v * m

  def step(x_t, inputs):
    k, step_key = inputs
    t = jnp.full((shape[0],), timesteps[k], jnp.int32)
    acp = spaced.alphas_cumprod[k]
    acp_prev = spaced.alphas_cumprod_prev[k]
    out = predict_fn(x_t, t).astype(jnp.float32)
    if prediction == "x0":
      x0 = out
    else:
      x0 = (x_t - jnp.sqrt(1.0 - acp) * out) / jnp.sqrt(acp)
    if clip_x0 is not None:
      x0 = jnp.clip(x0, -clip_x0, clip_x0)
    noise = jax.random.normal(step_key, shape, jnp.float32)
    not_last = (k > 0).astype(jnp.float32)
    if method == "ddim":
      eps = (x_t - jnp.sqrt(acp) * x0) / jnp.sqrt(1.0 - acp)
      sigma = eta * jnp.sqrt((1.0 - acp_prev) / (1.0 - acp)) * jnp.sqrt(1.0 - acp / acp_prev)
      mean = (jnp.sqrt(acp_prev) * x0 +
              jnp.sqrt(jnp.maximum(1.0 - acp_prev - sigma ** 2, 0.0)) * eps)
      x_prev = mean + not_last * sigma * noise
    else:
      mean = (_bcast(spaced.posterior_mean_coef1[k], ndim) * x0 +
              _bcast(spaced.posterior_mean_coef2[k], ndim) * x_t)
      std = jnp.exp(0.5 * spaced.posterior_log_variance_clipped[k])
      x_prev = mean + not_last * std * noise
    return apply_mask(x_prev), None

  ks = jnp.arange(timesteps.shape[0] - 1, -1, -1, dtype=jnp.int32)
  step_keys = jax.random.split(loop_key, timesteps.shape[0])
  x, _ = jax.lax.scan(step, apply_mask(x), (ks, step_keys))
  return x

