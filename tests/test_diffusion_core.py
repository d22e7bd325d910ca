"""Tests of selfconsume.diffusion: schedules, respacing, the masked loss, samplers, guidance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume.diffusion import gaussian_diffusion
from selfconsume.diffusion import sampling
from selfconsume.diffusion import schedules
from selfconsume.errors import ConfigError


@pytest.fixture(scope="module")
def cosine():
  return schedules.make_schedule("cosine", 1000)


def test_cosine_schedule_runs_from_data_to_noise(cosine):
  acp = np.asarray(cosine.alphas_cumprod)
  assert acp.shape == (1000,)
  assert np.all(np.diff(acp) < 0)
  assert acp[0] > 0.999 and acp[-1] < 1e-4
  assert np.all(np.asarray(cosine.betas) <= 0.999)


def test_linear_schedule_endpoints():
  s = schedules.make_schedule("linear", 400, beta_start=1e-4, beta_end=0.02)
  np.testing.assert_allclose(np.asarray(s.betas)[[0, -1]], [1e-4, 0.02], rtol=1e-5)
  np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, 400)),
                             rtol=1e-5)


def test_bad_schedule_is_config_error():
  with pytest.raises(ConfigError, match="quadratic"):
    schedules.make_schedule("quadratic", 10)
  with pytest.raises(ConfigError, match="sampling steps"):
    schedules.respaced_timesteps(10, 11)


def test_respaced_schedule_keeps_the_marginals(cosine):
  spaced, steps = schedules.respace(cosine, 50)
  assert steps.shape == (50,) and steps[0] == 0 and steps[-1] == 999
  assert np.all(np.diff(steps) > 0)
  np.testing.assert_allclose(spaced.alphas_cumprod, np.asarray(cosine.alphas_cumprod)[steps],
                             rtol=1e-6)
  # Product of the new alphas telescopes back to abar at each kept step.
  np.testing.assert_allclose(np.cumprod(np.asarray(spaced.alphas, np.float64)),
                             np.asarray(cosine.alphas_cumprod)[steps], rtol=2e-3)
  full, all_steps = schedules.respace(cosine, 1000)
  np.testing.assert_array_equal(all_steps, np.arange(1000))
  np.testing.assert_allclose(full.betas, cosine.betas, rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(full.posterior_mean_coef1, cosine.posterior_mean_coef1,
                             rtol=1e-3, atol=1e-6)


def test_q_sample_matches_formula(cosine):
  x0 = jnp.ones((3, 4, 5))
  noise = jnp.full((3, 4, 5), 2.0)
  t = jnp.array([0, 500, 999])
  xt = gaussian_diffusion.q_sample(cosine, x0, t, noise)
  acp = np.asarray(cosine.alphas_cumprod)[[0, 500, 999]]
  expected = np.sqrt(acp) + 2.0 * np.sqrt(1 - acp)
  np.testing.assert_allclose(xt[:, 0, 0], expected, rtol=1e-5)


def test_loss_ignores_masked_frames(cosine):
  key = jax.random.PRNGKey(0)
  x0 = jax.random.normal(key, (4, 6, 3))
  lengths = jnp.array([6, 3, 1, 4])
  mask = jnp.arange(6)[None, :] < lengths[:, None]  # (B, frames)

  def oracle(x_t, t):
    del x_t, t
    return x0

  def noisy_padding(x_t, t):
    del t
    return jnp.where(mask[..., None], x0, 1e3 + x_t)

  loss0, aux = gaussian_diffusion.training_loss(oracle, cosine, x0, key, mask=mask)
  loss1, _ = gaussian_diffusion.training_loss(noisy_padding, cosine, x0, key, mask=mask)
  assert float(loss0) == 0.0 and float(loss1) == 0.0
  assert aux["t"].shape == (4,) and aux["loss_per_example"].shape == (4,)
  # Without the mask the padding error counts.
  loss2, _ = gaussian_diffusion.training_loss(noisy_padding, cosine, x0, key)
  assert float(loss2) > 1e5

  # Each example weighs the same whatever its length: a constant error of 1 per real entry.
  def off_by_one(x_t, t):
    del x_t, t
    return x0 + 1.0
  loss3, aux3 = gaussian_diffusion.training_loss(off_by_one, cosine, x0, key, mask=mask)
  np.testing.assert_allclose(aux3["loss_per_example"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(loss3, 1.0, rtol=1e-6)


def test_eps_loss_is_zero_for_the_true_noise(cosine):
  key = jax.random.PRNGKey(1)
  x0 = jax.random.normal(key, (8, 5))

  def eps_oracle(x_t, t):
    return gaussian_diffusion.predict_eps_from_x0(cosine, x_t, t, x0)

  loss, _ = gaussian_diffusion.training_loss(eps_oracle, cosine, x0, key, prediction="eps")
  assert float(loss) < 1e-6


def _gaussian_oracle(schedule, mu, s, prediction):
  """E[x0 | x_t] for data x0 ~ N(mu, s^2 I) (or the matching eps)."""
  def predict(x_t, t):
    a = schedule.alphas_cumprod[t][:, None]
    gain = jnp.sqrt(a) * s ** 2 / (a * s ** 2 + 1 - a)
    x0 = mu + gain * (x_t - jnp.sqrt(a) * mu)
    if prediction == "x0":
      return x0
    return gaussian_diffusion.predict_eps_from_x0(schedule, x_t, t, x0)
  return predict


@pytest.mark.parametrize("method,prediction,eta", [
    ("ddim", "x0", 0.0), ("ddim", "eps", 1.0), ("ddpm", "x0", 0.0), ("ddpm", "eps", 0.0)])
def test_samplers_recover_a_gaussian_with_the_oracle(cosine, method, prediction, eta):
  mu, s = jnp.array([2.0, -1.0]), 0.5
  predict = _gaussian_oracle(cosine, mu, s, prediction)
  x = sampling.sample(predict, cosine, (4000, 2), jax.random.PRNGKey(2),
                      prediction=prediction, method=method, num_steps=50, eta=eta)
  x = np.asarray(x)
  assert np.all(np.isfinite(x))
  np.testing.assert_allclose(x.mean(0), mu, atol=0.05)
  np.testing.assert_allclose(x.std(0), s, rtol=0.1)


def test_ddim_with_a_point_oracle_returns_the_point(cosine):
  x0 = jax.random.normal(jax.random.PRNGKey(3), (2, 7, 3))
  out = sampling.sample(lambda x_t, t: x0, cosine, x0.shape, jax.random.PRNGKey(4),
                        num_steps=20)
  np.testing.assert_allclose(out, x0, atol=1e-5)


def test_sampler_queries_original_timesteps_and_zeroes_masked_frames(cosine):
  seen = []

  def predict(x_t, t):
    jax.debug.callback(lambda v: seen.append(int(v[0])), t)
    return jnp.ones_like(x_t)

  mask = jnp.array([[1, 1, 0], [1, 0, 0]], bool)
  out = sampling.sample(predict, cosine, (2, 3, 4), jax.random.PRNGKey(5), num_steps=10,
                        method="ddpm", mask=mask)
  jax.effects_barrier()
  assert seen == list(schedules.respaced_timesteps(1000, 10)[::-1])
  np.testing.assert_allclose(out, np.broadcast_to(np.asarray(mask)[..., None], (2, 3, 4)),
                             atol=1e-5)


def test_guidance_combines_predictions():
  cond = lambda x, t: x + 1.0  # noqa: E731
  uncond = lambda x, t: x  # noqa: E731
  x = jnp.zeros((2, 3))
  np.testing.assert_allclose(sampling.guided(cond, uncond, 2.5)(x, jnp.zeros(2)), 2.5)
  np.testing.assert_allclose(sampling.guided(cond, uncond, 1.0)(x, jnp.zeros(2)), 1.0)


def test_unknown_method_is_config_error(cosine):
  with pytest.raises(ConfigError, match="method"):
    sampling.sample(lambda x, t: x, cosine, (1, 2), jax.random.PRNGKey(0), method="euler")
