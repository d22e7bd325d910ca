"""A long fit killed midway resumes from its last checkpoint with the result of an
uninterrupted fit, bit for bit (MotionModel.fit with checkpoint_dir, on the smoke preset's
tiny MDM)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from experiments.configs import humanml as humanml_config
from selfconsume import loop
from selfconsume import outputs
from selfconsume.data import text as text_lib
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import model as model_lib

CAPTIONS = ["a person walks forward", "a person jumps in place", "someone waves",
            "a man turns around"]


class Killed(Exception):
  """Stands in for a kill: raised from the loss log after some steps."""


@pytest.fixture(scope="module")
def setup():
  config = humanml_config.get_config("smoke")
  config.train.steps_per_call = 10
  config.train.checkpoint_every = 20
  config.train.log_every = 10
  vocab = text_lib.Vocabulary.build(CAPTIONS)
  rng = np.random.default_rng(0)
  frames = int(config.data.max_frames)
  motions = rng.standard_normal((8, frames, 263)).astype(np.float32)
  lengths = rng.integers(20, frames + 1, 8)
  captions = [[CAPTIONS[i % 4]] for i in range(8)]
  buffer = loop.make_buffer(data_lib.encode_examples(
      motions, lengths, captions, vocab, int(config.text.max_len), 1))
  model = model_lib.MotionModel(config, vocab, np.zeros(263, np.float32),
                                np.ones(263, np.float32))
  return model, buffer


def _same(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b))


def test_killed_fit_resumes_to_the_uninterrupted_result(setup, tmp_path):
  model, buffer = setup
  start = model.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(7)
  steps = 50  # 5 calls of 10; checkpoints after steps 20 and 40
  full, full_metrics = model.fit(start, buffer, key, steps)

  directory = str(tmp_path / "fit")
  logged = []

  def kill_at_30(step, loss):
    logged.append((step, loss))
    if step == 30:
      raise Killed

  with pytest.raises(Killed):
    model.fit(start, buffer, key, steps, checkpoint_dir=directory, log=kill_at_30)
  assert [s for s, _ in logged] == [10, 20, 30]
  record = outputs.read_json(os.path.join(directory, "fit.json"))
  assert list(record["losses"]) == ["20"]  # the last checkpoint: step 20, not 30

  resumed_logged = []
  resumed, resumed_metrics = model.fit(
      start, buffer, key, steps, checkpoint_dir=directory,
      log=lambda step, loss: resumed_logged.append(step))
  assert resumed_logged == [30, 40, 50]  # it went on from step 20
  assert int(resumed.step) == int(full.step) == steps
  assert _same(resumed.params, full.params)
  assert _same(resumed.opt_state, full.opt_state)
  assert resumed_metrics["train_loss"] == full_metrics["train_loss"]


def test_checkpoint_of_another_fit_is_not_resumed(setup, tmp_path):
  model, buffer = setup
  start = model.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(3)
  directory = str(tmp_path / "fit")

  def kill_at_30(step, loss):
    if step == 30:
      raise Killed

  with pytest.raises(Killed):
    model.fit(start, buffer, key, 50, checkpoint_dir=directory, log=kill_at_30)
  # A fit of another length finds that checkpoint: it is not its own, so it starts over.
  full, _ = model.fit(start, buffer, key, 30)
  again, _ = model.fit(start, buffer, key, 30, checkpoint_dir=directory)
  assert _same(again.params, full.params)


def test_fit_inside_a_program_takes_the_eager_fits_steps(setup):
  # The loop's fine-tuning runs inside the fused generation as one scan; it must draw the
  # same batches and keys as the eager fit (generation 0's), call for call.
  model, buffer = setup
  start = model.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(5)
  eager, eager_metrics = model.fit(start, buffer, key, 30)
  program = jax.jit(lambda s, b, k: model.fit_in_program(s, b, k, 30, buffer.capacity))
  fused, metrics = program(start, buffer, key)
  assert int(fused.step) == int(eager.step) == 30
  assert metrics["fit_losses"].shape == (3, 10)
  assert int(metrics["fit_nonfinite"]) == 0
  np.testing.assert_allclose(np.mean(np.asarray(metrics["fit_losses"], np.float64)),
                             eager_metrics["train_loss"], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(fused.params), jax.tree.leaves(eager.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
