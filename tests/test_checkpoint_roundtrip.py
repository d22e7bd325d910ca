"""Tests of selfconsume.checkpoint: exact resume, normalisation, incompatible configs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from selfconsume import checkpoint
from selfconsume import train
from selfconsume.errors import CheckpointError
from tests.test_train_step import VOCAB
from tests.test_train_step import make_data
from tests.test_train_step import tiny_config


def test_save_restore_next_step_identical(tmp_path):
  config = tiny_config()
  data = make_data()
  batch = jax.tree.map(lambda a: a[:4], data)
  state = train.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  state, _ = train.jit_train_step(state, batch, jax.random.PRNGKey(1))
  norm = {"mean": np.arange(263, dtype=np.float32), "std": np.ones(263, np.float32)}
  ckpt = checkpoint.Checkpointer(tmp_path, config, VOCAB, normalization=norm)
  assert ckpt.latest_step() is None
  with pytest.raises(CheckpointError, match="no checkpoint"):
    ckpt.restore(state)
  assert ckpt.save(state) == 1

  fresh = train.create_train_state(config, jax.random.PRNGKey(9), VOCAB)
  reopened = checkpoint.Checkpointer(tmp_path, config, VOCAB)
  assert reopened.latest_step() == 1
  restored = reopened.restore(fresh)
  assert int(restored.step) == 1
  _, m1 = train.jit_train_step(state, batch, jax.random.PRNGKey(2))
  _, m2 = train.jit_train_step(restored, batch, jax.random.PRNGKey(2))
  assert float(m1["loss"]) == float(m2["loss"])
  assert float(m1["grad_norm"]) == float(m2["grad_norm"])
  np.testing.assert_array_equal(reopened.restore_normalization()["mean"], norm["mean"])
  assert reopened.saved_config()["config"]["model"]["latent_dim"] == 32


def test_incompatible_config_is_refused(tmp_path):
  config = tiny_config()
  state = train.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  checkpoint.Checkpointer(tmp_path, config, VOCAB).save(state)
  wider = tiny_config()
  wider.model.latent_dim = 64
  other = checkpoint.Checkpointer(tmp_path, wider, VOCAB)
  with pytest.raises(CheckpointError, match="model.latent_dim: the checkpoint has 32, the config has 64"):
    other.restore(state)
  with pytest.raises(CheckpointError, match="model.vocab_size"):
    checkpoint.Checkpointer(tmp_path, config, VOCAB + 1).restore(state)
  eps = tiny_config()
  eps.diffusion.prediction = "eps"
  with pytest.raises(CheckpointError, match="diffusion.prediction"):
    checkpoint.Checkpointer(tmp_path, eps, VOCAB).restore(state)
  with pytest.raises(CheckpointError, match="no checkpoint at step 7"):
    checkpoint.Checkpointer(tmp_path, config, VOCAB).restore(state, step=7)
