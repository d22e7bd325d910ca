"""The Gaussian toy: model fit, W2, correctors, the jitted loop, and the experiment driver."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import gaussian as gaussian_experiment
from experiments.configs import gaussian as gaussian_config
from selfconsume import loop
from selfconsume.errors import ConfigError
from selfconsume.gaussian import correctors
from selfconsume.gaussian import model as gm
from selfconsume.gaussian import theory
from selfconsume.gaussian import toy


def test_mle_fit_matches_numpy():
  x = np.random.default_rng(0).normal(size=(40, 2)) @ np.array([[2.0, 0.0], [0.7, 0.5]]) + 3.0
  fit = gm.fit_points(jnp.asarray(x))
  np.testing.assert_allclose(fit.mean, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(fit.cov, np.cov(x.T, bias=True) + 1e-6 * np.eye(2), rtol=1e-4, atol=1e-5)


def test_weighted_fit_ignores_zero_weights():
  x = jnp.array([[0.0, 0.0], [2.0, 2.0], [100.0, -100.0]])
  fit = gm.fit_points(x, jnp.array([1.0, 1.0, 0.0]))
  np.testing.assert_allclose(fit.mean, [1.0, 1.0], atol=1e-6)


def test_w2_against_hand_computed_cases():
  standard = gm.Gaussian(mean=jnp.zeros(2), cov=jnp.eye(2))
  shifted = gm.Gaussian(mean=jnp.array([3.0, 4.0]), cov=jnp.diag(jnp.array([4.0, 9.0])))
  # |m|^2 = 25; tr(S + I - 2 S^1/2) = (4 + 1 - 4) + (9 + 1 - 6) = 5.
  np.testing.assert_allclose(gm.wasserstein2(shifted, standard), np.sqrt(30.0), rtol=1e-5)
  np.testing.assert_allclose(gm.wasserstein2(standard, shifted), np.sqrt(30.0), rtol=1e-5)
  assert float(gm.wasserstein2(shifted, shifted)) < 1e-3
  # Rotated anisotropic covariances with equal spectra: W2^2 = tr(A + B - 2 (A^1/2 B A^1/2)^1/2).
  a = jnp.diag(jnp.array([4.0, 1.0]))
  b = jnp.diag(jnp.array([1.0, 4.0]))
  expected = np.sqrt(2 * (4 + 1) - 2 * 2 * 2)  # (A^1/2 B A^1/2)^1/2 = 2 I
  np.testing.assert_allclose(gm.wasserstein2(gm.Gaussian(jnp.zeros(2), a), gm.Gaussian(jnp.zeros(2), b)),
                             expected, rtol=1e-5)


def test_mixture_corrector_is_identity_at_gamma_zero():
  x = jax.random.normal(jax.random.key(0), (500, 2)) * 3.0 + 5.0
  np.testing.assert_array_equal(correctors.mixture(jax.random.key(1), x, 0.0), x)


def test_mixture_corrector_gives_target_samples_as_gamma_grows():
  x = jax.random.normal(jax.random.key(0), (4000, 2)) * 3.0 + 5.0
  out = np.asarray(correctors.mixture(jax.random.key(1), x, 1e9))
  assert not np.any(np.all(out == np.asarray(x), axis=1))  # every sample was replaced
  # Mean ~ 0 and covariance ~ I within sampling error of 4000 draws (about 0.016 / 0.03).
  assert np.all(np.abs(out.mean(0)) < 0.08)
  assert np.allclose(np.cov(out.T), np.eye(2), atol=0.12)


def test_mixture_corrector_replaces_the_expected_share():
  x = jnp.full((20000, 2), 7.0)
  out = np.asarray(correctors.mixture(jax.random.key(3), x, 3.0))
  replaced = np.mean(np.any(out != 7.0, axis=1))
  assert abs(replaced - 0.75) < 0.015  # gamma / (1 + gamma)


def test_histogram_density_matches_numpy():
  x = np.random.default_rng(1).normal(size=(37, 2))
  density, low, width = correctors.histogram_density(jnp.asarray(x), jnp.ones(37, bool), 10)
  expected, xedges, yedges = np.histogram2d(x[:, 0], x[:, 1], bins=10, density=True)
  np.testing.assert_allclose(density, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(low, [xedges[0], yedges[0]], rtol=1e-5)


def test_histogram_corrector_at_large_gamma_samples_the_target():
  x = jax.random.normal(jax.random.key(0), (3000, 2)) * 0.1 + 4.0  # far from p*
  out = np.asarray(correctors.histogram_rejection(
      jax.random.key(1), x, jnp.ones(3000, bool), jnp.float32(1e6)))
  assert np.all(np.abs(out.mean(0)) < 0.1)
  assert np.allclose(np.cov(out.T), np.eye(2), atol=0.15)


def test_histogram_corrector_at_gamma_zero_resamples_the_synthetic_set():
  x = jax.random.normal(jax.random.key(0), (3000, 2)) * 0.3 + 1.0
  out = np.asarray(correctors.histogram_rejection(
      jax.random.key(1), x, jnp.ones(3000, bool), jnp.float32(0.0)))
  # Proposals come from p*, so accepted points lie where the histogram has mass.
  assert np.all(np.abs(out.mean(0) - 1.0) < 0.1)
  assert np.all(np.abs(out.std(0) - 0.3) < 0.08)


SMALL = toy.ToySettings(num_real=50, num_synthetic=25, num_generations=40)


def test_simulate_is_deterministic_by_seed_and_lanes_are_independent():
  keys = jax.random.split(jax.random.key(0), 3)
  gammas = jnp.array([0.0, 1.0, 5.0])
  a = np.asarray(toy.simulate_grid(keys, gammas, settings=SMALL))
  b = np.asarray(toy.simulate_grid(keys, gammas, settings=SMALL))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (3, 41)
  # A lane's result does not depend on the other lanes in the grid.
  reordered = np.asarray(toy.simulate_grid(keys[::-1], gammas[::-1], settings=SMALL))
  np.testing.assert_allclose(reordered[::-1], a, rtol=1e-5, atol=1e-6)
  other_seed = np.asarray(toy.simulate_grid(jax.random.split(jax.random.key(1), 3), gammas,
                                            settings=SMALL))
  assert not np.allclose(other_seed, a)


def test_generation_zero_is_the_fit_of_the_real_data():
  key = jax.random.key(7)
  w2 = np.asarray(toy.simulate_grid(key[None], jnp.array([0.0]), settings=SMALL))
  data_key, _ = jax.random.split(key)
  real = jax.random.normal(data_key, (50, 2))
  expected = gm.wasserstein2(gm.fit_points(real), correctors.standard_normal(2))
  np.testing.assert_allclose(w2[0, 0], expected, rtol=1e-5)


def test_correction_lowers_the_error():
  settings = toy.ToySettings(num_real=50, num_synthetic=25, num_generations=120)
  seeds = 8
  keys = jnp.tile(jax.random.split(jax.random.key(0), seeds), 2)
  gammas = jnp.repeat(jnp.array([0.0, 5.0]), seeds)
  w2 = np.asarray(toy.simulate_grid(keys, gammas, settings=settings)).reshape(2, seeds, -1)
  tail = w2[:, :, -40:].mean(axis=(1, 2))
  assert tail[1] < 0.5 * tail[0]


def test_accumulating_differs_from_replacing():
  keys = jax.random.split(jax.random.key(0), 2)
  gammas = jnp.array([0.0, 0.0])
  accumulated = np.asarray(toy.simulate_grid(keys, gammas, settings=SMALL))
  replaced = np.asarray(toy.simulate_grid(
      keys, gammas, settings=toy.ToySettings(num_real=50, num_synthetic=25, num_generations=40,
                                              accumulate=False)))
  np.testing.assert_array_equal(accumulated[:, :2], replaced[:, :2])  # identical until G = 2
  assert not np.allclose(accumulated[:, 3:], replaced[:, 3:])


def test_theory_boundary_is_where_the_factor_is_one():
  eps = theory.generalization_error(50)
  for gamma in (0.0, 0.5, 2.0, 5.0):
    lam = theory.stability_boundary(gamma, eps=eps)
    np.testing.assert_allclose(theory.contraction_factor(lam, gamma, eps=eps), 1.0, rtol=1e-9)
  assert theory.rho(0.0) == 0.0
  assert np.isinf(theory.rho(1.0))  # lambda (alpha + eps L) >= alpha: no guarantee at all
  # Correction shrinks the factor by 1 / (1 + gamma).
  np.testing.assert_allclose(theory.contraction_factor(0.3, 4.0) * 5, theory.rho(0.3))


def test_smoke_run_writes_every_output(tmp_path):
  config = gaussian_config.get_config("smoke")
  summary = gaussian_experiment.run(config, str(tmp_path))
  for name in ("summary.json", "curves.npz", "w2.png", "stability.png"):
    assert (tmp_path / name).stat().st_size > 0, name
  assert any(p.name.startswith("events") for p in (tmp_path / "tensorboard").iterdir())
  rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
  assert len(rows) == len(config.gammas) * len(set(config.synthetic_ratios) | {config.synthetic_ratio})
  assert {"gamma", "lambda", "w2_final_mean", "w2_final_ci95", "w2_last100_mean"} <= set(rows[0])
  by_gamma = {r["gamma"]: r["w2_last100_mean"] for r in rows if r["lambda"] == 0.5}
  assert by_gamma[5.0] < by_gamma[0.0]
  lo, hi = rows[0]["w2_final_ci95"]
  assert lo <= rows[0]["w2_final_mean"] <= hi
  curves = np.load(tmp_path / "curves.npz")
  assert curves["w2"].shape == (3, 2, config.num_seeds, config.num_generations + 1)
  assert summary["rows"] == rows


@pytest.mark.parametrize("field,value,message", [
    ("num_real", 1, "num_real"),
    ("synthetic_ratio", -0.5, "lambda"),
    ("gammas", (0.0, -1.0), "gammas"),
    ("corrector", "magic", "corrector"),
])
def test_bad_config_values_are_config_errors(field, value, message):
  config = gaussian_config.get_config("smoke")
  config[field] = value
  with pytest.raises(ConfigError, match=message):
    gaussian_experiment.validate(config)


def test_unknown_preset_is_a_config_error():
  with pytest.raises(ConfigError, match="unknown preset 'huge'.*'smoke'"):
    gaussian_config.get_config("huge")


@pytest.mark.parametrize("args,message", [
    (["--config=experiments/configs/gaussian.py:smoke", "--config.no_such_field=3"],
     "has no field 'no_such_field'"),
    (["--config=experiments/configs/gaussian.py:bogus"], "unknown preset 'bogus'"),
    (["--config=experiments/configs/gaussian.py:smoke", "--config.num_real=1"], "num_real"),
])
def test_command_line_errors_are_one_line(args, message, run_command, tmp_path):
  result = run_command(*args, f"--workdir={tmp_path}")
  assert result.returncode == 2
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def test_command_in_process_reports_a_stray_argument_and_restores_argv(run_command, tmp_path):
  argv = list(sys.argv)
  result = run_command("--config=experiments/configs/gaussian.py:smoke", f"--workdir={tmp_path}",
                       "stray")
  assert result.returncode == 1
  assert "unexpected arguments: ['stray']" in result.stderr
  assert sys.argv == argv and not os.listdir(tmp_path)


def test_num_synthetic_floors():
  assert loop.num_synthetic(0.5, 50) == 25
  assert loop.num_synthetic(0.7, 10) == 7
  assert loop.num_synthetic(0.0, 10) == 0
  with pytest.raises(ConfigError):
    loop.num_synthetic(-1.0, 10)
