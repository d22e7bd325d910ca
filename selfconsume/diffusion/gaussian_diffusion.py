"""The forward (noising) process and the denoising training loss.

`predict_fn(x_t, t) -> prediction` is any function of the noisy input (same shape as x0) and
the integer timesteps t (B,); it predicts either x0 or the noise eps, as the caller says.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from selfconsume.diffusion.schedules import Schedule
from selfconsume.errors import ConfigError

PREDICTIONS = ("x0", "eps")

PredictFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _per_example(coef: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """Gathers coef[t] (B,) and reshapes it to (B, 1, ..., 1) to broadcast over an x of `ndim`."""
  return coef[t].reshape((t.shape[0],) + (1,) * (ndim - 1))


def q_sample(schedule: Schedule, x0: jnp.ndarray, t: jnp.ndarray,
             noise: jnp.ndarray) -> jnp.ndarray:
  """Samples x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I).

  Args:
    schedule: the diffusion schedule.
    x0: clean data (B, ...), e.g. (B, frames, 263).
    t: int timesteps (B,) in 0..T-1.
    noise: standard normal noise, same shape as x0.
  Returns:
    x_t, same shape as x0.
  """
  return (_per_example(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0 +
          _per_example(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise)


def predict_x0_from_eps(schedule: Schedule, x_t: jnp.ndarray, t: jnp.ndarray,
                        eps: jnp.ndarray) -> jnp.ndarray:
  """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); shapes as x_t (B, ...)."""
  return ((x_t - _per_example(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim) * eps) /
          _per_example(schedule.sqrt_alphas_cumprod, t, x_t.ndim))


def predict_eps_from_x0(schedule: Schedule, x_t: jnp.ndarray, t: jnp.ndarray,
                        x0: jnp.ndarray) -> jnp.ndarray:
  """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t); shapes as x_t (B, ...)."""
  return ((x_t - _per_example(schedule.sqrt_alphas_cumprod, t, x_t.ndim) * x0) /
          _per_example(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim))


def broadcast_mask(mask: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """Expands a mask with leading axes of x, e.g. (B, frames) for x (B, frames, 263), to x's shape.

  Missing axes are appended at the end (a per-frame mask covers all features of the frame);
  a mask of x's rank broadcasts as usual.
  """
  mask = jnp.asarray(mask, x.dtype)
  if mask.ndim < x.ndim:
    mask = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
  return jnp.broadcast_to(mask, x.shape)


def training_loss(predict_fn: PredictFn, schedule: Schedule, x0: jnp.ndarray,
                  key: jax.Array, *, prediction: str = "x0",
                  mask: jnp.ndarray | None = None
                  ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """The simple denoising loss: mean squared error of the prediction over unmasked entries.

  Each example's error is averaged over its unmasked entries (padded frames carry no weight,
  whatever their length), then examples are averaged. With prediction='x0' the target is x0
  (MDM), with 'eps' the noise (DDPM).

  Args:
    predict_fn: (x_t (B, ...), t (B,) int32) -> prediction, same shape as x0.
    schedule: the diffusion schedule (T steps); t is drawn uniformly from 0..T-1.
    x0: clean data (B, ...), e.g. (B, frames, 263) with padded frames.
    key: PRNG key for t and the noise.
    prediction: 'x0' or 'eps'.
    mask: optional, 1 where the entry counts; (B, frames) or any shape broadcastable to x0.
  Returns:
    (loss scalar, aux) with aux = {'t': (B,), 'loss_per_example': (B,)}.
  """
  if prediction not in PREDICTIONS:
    raise ConfigError(f"diffusion prediction must be one of {PREDICTIONS}, got {prediction!r}")
  t_key, noise_key = jax.random.split(key)
  batch = x0.shape[0]
  t = jax.random.randint(t_key, (batch,), 0, schedule.num_steps, dtype=jnp.int32)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_t = q_sample(schedule, x0, t, noise)
  if mask is not None:
    # Padded frames of the noisy input are zeroed so the model never sees noise there.
    m = broadcast_mask(mask, x0)
    x_t = x_t * m
  out = predict_fn(x_t, t)
  target = x0 if prediction == "x0" else noise
  err = jnp.square(out.astype(jnp.float32) - target.astype(jnp.float32))
  axes = tuple(range(1, x0.ndim))
  if mask is None:
    per_example = jnp.mean(err, axis=axes)
  else:
    per_example = jnp.sum(err * m, axis=axes) / jnp.maximum(jnp.sum(m, axis=axes), 1.0)
  return jnp.mean(per_example), {"t": t, "loss_per_example": per_example}
