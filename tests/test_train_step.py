"""Tests of selfconsume.humanml.training: the pure step, fused steps, EMA, non-finite handling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import humanml as humanml_config
from selfconsume import metric_writers
from selfconsume.errors import ConfigError
from selfconsume.errors import NonFiniteError
from selfconsume.humanml import training

FRAMES, VOCAB, TEXT_LEN, BATCH = 12, 30, 6, 4


def tiny_config(**train_overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = humanml_config.get_config("smoke").model
  c.diffusion = ml_collections.ConfigDict(dict(schedule="cosine", num_steps=100,
                                               prediction="x0"))
  c.train = ml_collections.ConfigDict(dict(batch_size=BATCH, learning_rate=3e-3,
                                           weight_decay=0.0, grad_clip=1.0, warmup_steps=2,
                                           ema_decay=0.9))
  c.train.update(train_overrides)
  c.text = ml_collections.ConfigDict(dict(max_len=TEXT_LEN))
  return c


def make_data(n: int = 8, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  t = np.linspace(0, 2 * np.pi, FRAMES)[None, :, None]
  motion = np.sin(t * rng.uniform(0.5, 2, (n, 1, 263)) + rng.uniform(0, 6, (n, 1, 263)))
  lengths = rng.integers(6, FRAMES + 1, n).astype(np.int32)
  motion *= (np.arange(FRAMES)[None, :] < lengths[:, None])[..., None]
  ids = rng.integers(2, VOCAB, (n, TEXT_LEN)).astype(np.int32)
  return {"motion": jnp.asarray(motion, jnp.float32), "lengths": jnp.asarray(lengths),
          "text_ids": jnp.asarray(ids), "text_mask": jnp.ones((n, TEXT_LEN), bool)}


def draw(key, data):
  idx = jax.random.choice(key, data["motion"].shape[0], (BATCH,), replace=False)
  return jax.tree.map(lambda a: a[idx], data)


def test_loss_decreases_and_ema_lags(tmp_path):
  config = tiny_config()
  state = training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  data = make_data()
  writer = metric_writers.MetricsWriter(str(tmp_path), enabled=True)
  state, history = training.train(state, data, draw, 60, jax.random.PRNGKey(1),
                                  steps_per_call=20, log_every=20, progress=False, writer=writer)
  writer.close()
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert int(state.step) == 60
  assert len(history) == 3
  assert history[-1]["loss"] < 0.7 * history[0]["loss"]
  assert history[0]["learning_rate"] > 0
  diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, state.ema_params)
  assert max(jax.tree.leaves(diff)) > 0


def test_nonfinite_step_keeps_state_and_last_checkpoint(tmp_path):
  config = tiny_config(ema_decay=0.0)
  state = training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  data = make_data()
  ckpt = training.Checkpointer(tmp_path / "ckpt", config, VOCAB)
  state, _ = training.train(state, data, draw, 10, jax.random.PRNGKey(1), steps_per_call=10,
                            progress=False, checkpointer=ckpt)
  assert ckpt.latest_step() == 10
  good = jax.device_get(state.params)
  bad = dict(data, motion=data["motion"].at[:, 0, 0].set(jnp.nan))
  with pytest.raises(NonFiniteError, match="non-finite at step 10") as info:
    training.train(state, bad, draw, 10, jax.random.PRNGKey(2), steps_per_call=10,
                   progress=False, checkpointer=ckpt)
  assert "step 10) is intact" in str(info.value)
  kept = info.value.state
  assert int(kept.step) == 10
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(kept.params), good)
  assert ckpt.latest_step() == 10
  restored = ckpt.restore(training.create_train_state(config, jax.random.PRNGKey(5), VOCAB))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params), good)


def test_bad_train_config_is_config_error():
  with pytest.raises(ConfigError, match="decay"):
    training.train_settings(tiny_config(decay="exponential"))


def test_learning_rate_warmup_and_cosine_decay():
  lr = training.learning_rate_schedule(dict(training.TRAIN_DEFAULTS, learning_rate=1.0,
                                            warmup_steps=10, decay="cosine", decay_steps=110))
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)],
                             [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-5)
