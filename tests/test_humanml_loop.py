"""The motion-loop driver's orchestration (order, outputs, resume) on stand-in components.

The stand-ins fit a 2-D mean instead of MDM, so these tests check the driver itself in
seconds; tests/test_humanml_smoke.py runs the real pieces end to end.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import humanml as humanml_config
from selfconsume import errors
from selfconsume import loop
from selfconsume import outputs
from selfconsume import sweep
from selfconsume.humanml import correction


@functools.partial(jax.jit, static_argnums=3)
def _fit_mean(mean, buffer, key, steps):
  def step(mean, k):
    batch = loop.draw_batch(k, buffer, 4)["x"]
    return mean + 0.3 * (batch.mean(0) - mean), None
  return jax.lax.scan(step, mean, jax.random.split(key, steps))[0]


def _components(calls: list[str] | None = None, score_synthetic=None) -> sweep.Components:
  calls = [] if calls is None else calls

  def real_buffer(n):
    x = jax.random.normal(jax.random.PRNGKey(1), (n, 2)) + 3.0
    return loop.make_buffer({"x": x})

  def synthetic_buffer(n, ratio):
    return loop.empty_buffer({"x": jnp.zeros((1, 2))}, loop.num_synthetic(ratio, n))

  def init(key):
    return {"mean": jax.random.normal(key, (2,)), "steps": jnp.zeros((), jnp.int32)}

  def fit(state, buffer, key, steps):
    calls.append(f"fit{steps}")
    mean = _fit_mean(state["mean"], buffer, key, steps)
    return {"mean": mean, "steps": state["steps"] + steps}, {"train_loss": jnp.sum(mean ** 2)}

  def sample(state, template, key, n, ratio):
    calls.append("sample")
    x = state["mean"] + 1.5 * jax.random.normal(key, (template.capacity, 2))
    return loop.make_buffer({"x": x})

  def correct(key, buffer):
    calls.append("correct")
    x = buffer.data["x"]
    fixed = 0.5 * x + 0.5 * 3.0 + 0.01 * jax.random.normal(key, x.shape)
    return loop.make_buffer({"x": fixed}), {"tracking_error_m": jnp.mean(jnp.abs(fixed - x)),
                                            "fall_rate": jnp.float32(0.0)}

  def evaluate(state, key):
    calls.append("evaluate")
    return {"fid": float(jnp.sum((state["mean"] - 3.0) ** 2)),
            "r_precision": [0.1, 0.2, 0.3], "float_mm": 1.0}

  def save(directory, state):
    os.makedirs(directory)
    np.savez(os.path.join(directory, "state.npz"), **jax.device_get(state))

  def restore(directory, template):
    with np.load(os.path.join(directory, "state.npz")) as f:
      return {k: jnp.asarray(f[k]) for k in template}

  return sweep.Components(real_buffer=real_buffer, synthetic_buffer=synthetic_buffer,
                            init=init, fit=fit, sample=sample, correct=correct,
                            evaluate=evaluate, save=save, restore=restore,
                            score_synthetic=score_synthetic)


def _config(generations=3):
  config = humanml_config.get_config("smoke")
  config.loop.generations = generations
  config.loop.sizes = (8,)
  config.loop.lambdas = (0.5, 1.0)
  config.train.gen0_steps = (5,)
  config.train.generation_steps = (3,)
  config.outputs.videos = False
  return config


def _rows(workdir):
  rows = outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  for row in rows:
    row.pop("seconds")
  return rows


def test_presets_load_and_unknown_preset_is_an_error():
  for preset in ("", "smoke", "paper"):
    config = humanml_config.get_config(preset)
    assert len(config.train.gen0_steps) == len(config.loop.sizes)
  assert humanml_config.get_config("paper").loop.generations == 50
  with pytest.raises(ValueError, match="unknown preset"):
    humanml_config.get_config("huge")


def test_every_corrector_setting_is_a_config_field():
  config = humanml_config.get_config("smoke")
  config.correction.physics.refine_method = "gradient"
  config.correction.physics.refine_iterations = 3
  physics = correction.corrector_params(config)
  assert (physics.refine_method, physics.refine_iterations) == ("gradient", 3)
  assert not hasattr(physics, "gamma")  # the loop mixes corrected and sampled motions itself
  config.correction.physics.solver = "PGS"
  with pytest.raises(errors.ConfigError, match="physics.solver='PGS'"):
    correction.corrector_params(config)


def test_sweep_writes_rows_summary_and_plots(tmp_path):
  calls = []
  summary = sweep.run_loop(_config(), str(tmp_path), _components(calls))
  rows = _rows(tmp_path)
  # Baseline once (lambda 0) + 2 variants x 2 lambdas, each generations 0..3.
  assert len(rows) == 5 * 4
  assert {(r["variant"], r["lambda"]) for r in rows} == {
      ("baseline", 0.0), ("self_consuming", 0.5), ("self_consuming", 1.0),
      ("self_correcting", 0.5), ("self_correcting", 1.0)}
  for key in ("fid", "r_precision", "matching", "diversity", "multimodality", "float_mm",
              "penetrate_mm", "skate", "tracking_error_m", "fall_rate"):
    assert key in rows[0]
  # Generation 0 is trained once and shared by every curve.
  assert calls.count("fit5") == 1
  assert len({json.dumps(r["fid"]) for r in rows if r["generation"] == 0}) == 1
  # Only self_correcting corrects: 2 lambdas x 3 generations.
  assert calls.count("correct") == 6
  assert calls.count("sample") == 12
  corr = [r for r in rows if r["variant"] == "self_correcting" and r["generation"] > 0]
  assert all(r["tracking_error_m"] is not None for r in corr)
  assert "n8/lambda1" in summary["comparisons"]
  assert os.path.exists(tmp_path / "summary.json")
  assert os.path.exists(tmp_path / "plots" / "n8_lambda1.png")
  assert os.listdir(tmp_path / "tensorboard")
  assert os.path.exists(tmp_path / "checkpoints" / "n8" / "lambda0.5" / "self_correcting"
                        / "gen_003" / "state")


def test_crash_and_rerun_matches_uninterrupted_run(tmp_path):
  straight = tmp_path / "straight"
  sweep.run_loop(_config(), str(straight), _components())

  crashed = tmp_path / "crashed"
  calls = []
  # Crash right after generation 2 of one run has been checkpointed.
  sweep.run_loop(_config(), str(crashed), _components(calls),
                   stop_after=lambda name, g: name == "n8/lambda0.5/self_correcting" and g == 2)
  # A half-written generation 3 (checkpoint without row) must be redone, not trusted.
  half = crashed / "checkpoints" / "n8" / "lambda0.5" / "self_correcting" / "gen_003" / "state"
  os.makedirs(half)
  calls.clear()
  sweep.run_loop(_config(), str(crashed), _components(calls))
  assert calls.count("fit5") == 0  # generation 0 restored, not retrained
  assert _rows(crashed) == _rows(straight)


def test_rows_score_the_synthetic_motions_each_generation_trained_on(tmp_path):
  def score_synthetic(buffer):
    # Mean distance of the fitted synthetic points to the data's centre (3, 3): the
    # corrector halves it.
    x = np.asarray(buffer.data["x"])[np.asarray(buffer.valid)]
    return {"synthetic_offset": float(np.linalg.norm(x - 3.0, axis=-1).mean()),
            "synthetic_count": len(x)}

  sweep.run_loop(_config(), str(tmp_path), _components(score_synthetic=score_synthetic))
  rows = _rows(tmp_path)
  for row in rows:
    trained_on_synthetic = row["variant"] != "baseline" and row["generation"] > 0
    assert ("synthetic_offset" in row) == trained_on_synthetic, row
    if trained_on_synthetic:
      assert row["synthetic_count"] == int(8 * row["lambda"])
  offset = {(r["variant"], r["lambda"], r["generation"]): r["synthetic_offset"]
            for r in rows if "synthetic_offset" in r}
  for (variant, ratio, generation), value in offset.items():
    if variant == "self_correcting":
      assert value < offset[("self_consuming", ratio, generation)]
