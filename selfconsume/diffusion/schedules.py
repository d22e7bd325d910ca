"""Noise schedules of Gaussian diffusion and their respacing to fewer sampling steps.

A schedule holds, for every training timestep t in 0..T-1, the per-step noise beta_t and the
quantities derived from it that the forward process q(x_t | x_0) and the posterior
q(x_{t-1} | x_t, x_0) need. All arrays are float32 of shape (T,).
"""

from __future__ import annotations

import math

import flax
import jax.numpy as jnp
import numpy as np

from selfconsume.errors import ConfigError

SCHEDULES = ("cosine", "linear")


@flax.struct.dataclass
class Schedule:
  """Per-timestep diffusion coefficients, each of shape (T,).

  `alphas_cumprod[t]` is abar_t = prod_{s<=t} (1 - beta_s); `alphas_cumprod_prev[t]` is
  abar_{t-1} with abar_{-1} = 1. The posterior q(x_{t-1} | x_t, x_0) has mean
  `posterior_mean_coef1[t] * x_0 + posterior_mean_coef2[t] * x_t` and variance
  `posterior_variance[t]` (its log clipped at t = 0, where the variance is 0).
  """
  betas: jnp.ndarray
  alphas: jnp.ndarray
  alphas_cumprod: jnp.ndarray
  alphas_cumprod_prev: jnp.ndarray
  sqrt_alphas_cumprod: jnp.ndarray
  sqrt_one_minus_alphas_cumprod: jnp.ndarray
  posterior_variance: jnp.ndarray
  posterior_log_variance_clipped: jnp.ndarray
  posterior_mean_coef1: jnp.ndarray
  posterior_mean_coef2: jnp.ndarray

  @property
  def num_steps(self) -> int:
    """T, the number of diffusion steps (static: taken from the array shape)."""
    return self.betas.shape[0]


def schedule_from_alphas_cumprod(alphas_cumprod) -> Schedule:
  """Builds a Schedule from abar_t (T,) (numpy or jax; jit-able when given jax arrays)."""
  xp = np if isinstance(alphas_cumprod, np.ndarray) else jnp
  acp = alphas_cumprod
  acp_prev = xp.concatenate([xp.ones((1,), acp.dtype), acp[:-1]])
  betas = 1.0 - acp / acp_prev
  alphas = 1.0 - betas
  posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
  # The variance is 0 at t = 0; its log takes the t = 1 value there, as in Ho et al.
  log_var = xp.log(xp.concatenate([posterior_variance[1:2], posterior_variance[1:]]))
  fields = dict(
      betas=betas,
      alphas=alphas,
      alphas_cumprod=acp,
      alphas_cumprod_prev=acp_prev,
      sqrt_alphas_cumprod=xp.sqrt(acp),
      sqrt_one_minus_alphas_cumprod=xp.sqrt(1.0 - acp),
      posterior_variance=posterior_variance,
      posterior_log_variance_clipped=log_var,
      posterior_mean_coef1=betas * xp.sqrt(acp_prev) / (1.0 - acp),
      posterior_mean_coef2=(1.0 - acp_prev) * xp.sqrt(alphas) / (1.0 - acp),
  )
  return Schedule(**{k: jnp.asarray(v, jnp.float32) for k, v in fields.items()})


def make_betas(name: str, num_steps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
  """Returns the float64 betas (num_steps,) of a named schedule.

  'linear': evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020).
  'cosine': abar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), s = 0.008, betas clipped at 0.999
  (Nichol & Dhariwal 2021; MDM's schedule). `beta_start`/`beta_end` are ignored for it.
  """
  if num_steps < 2:
    raise ConfigError(f"diffusion num_steps must be >= 2, got {num_steps}")
  if name == "linear":
    if not 0.0 < beta_start <= beta_end < 1.0:
      raise ConfigError(f"linear schedule needs 0 < beta_start <= beta_end < 1, got "
                        f"beta_start={beta_start}, beta_end={beta_end}")
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  if name == "cosine":
    s = 0.008
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    abar = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1.0 - abar[1:] / abar[:-1], 0.999)
  raise ConfigError(f"diffusion schedule name must be one of {SCHEDULES}, got {name!r}")


def make_schedule(name: str, num_steps: int, beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> Schedule:
  """Returns the Schedule of `num_steps` steps for `name` in ('cosine', 'linear')."""
  betas = make_betas(name, num_steps, beta_start, beta_end)
  return schedule_from_alphas_cumprod(np.cumprod(1.0 - betas))


def respaced_timesteps(num_train_steps: int, num_sample_steps: int) -> np.ndarray:
  """The `num_sample_steps` training timesteps (int32, increasing) a respaced sampler visits.

  Evenly spaced over 0..T-1 and always including T-1 (pure noise) and 0 (the data end).
  """
  if not 1 <= num_sample_steps <= num_train_steps:
    raise ConfigError(f"sampling steps must be in 1..{num_train_steps} (the training steps), "
                      f"got {num_sample_steps}")
  if num_sample_steps == 1:
    return np.array([num_train_steps - 1], np.int32)
  steps = np.round(np.linspace(0, num_train_steps - 1, num_sample_steps)).astype(np.int32)
  return np.unique(steps)


def respace(schedule: Schedule, num_sample_steps: int) -> tuple[Schedule, np.ndarray]:
  """Restricts `schedule` to a subset of its timesteps (Nichol & Dhariwal 2021, sec. 4).

  Returns (the respaced Schedule of length K, the original timesteps (K,) it keeps). The new
  schedule's abar_k equals the original abar at timesteps[k], and its betas are chosen so
  that the forward process over the kept steps has exactly those marginals. Jit-able in
  `schedule` (the subset depends only on the static T and `num_sample_steps`).
  """
  timesteps = respaced_timesteps(schedule.num_steps, num_sample_steps)
  return schedule_from_alphas_cumprod(schedule.alphas_cumprod[timesteps]), timesteps
