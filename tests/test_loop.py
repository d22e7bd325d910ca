"""The generic self-consuming loop: buffers, mixing, correction probability, variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume import loop
from selfconsume.errors import ConfigError


def test_draw_batch_only_draws_valid_examples_uniformly():
  buffer = loop.make_buffer({"x": jnp.arange(6.0)}, jnp.array([1, 0, 1, 0, 1, 0], bool))
  batch = np.asarray(loop.draw_batch(jax.random.key(0), buffer, 30000)["x"])
  assert set(np.unique(batch)) == {0.0, 2.0, 4.0}
  counts = np.array([(batch == v).mean() for v in (0.0, 2.0, 4.0)])
  assert np.all(np.abs(counts - 1 / 3) < 0.02)


def test_concat_keeps_masks_and_data():
  a = loop.make_buffer({"x": jnp.ones((2, 3))})
  b = loop.empty_buffer({"x": jnp.ones((1, 3))}, 4)
  both = loop.concat(a, b)
  assert both.capacity == 6 and int(both.size) == 2
  assert both.data["x"].shape == (6, 3)


def test_union_draws_real_and_synthetic_in_proportion():
  real = loop.make_buffer(jnp.zeros((64,)))
  synthetic = loop.make_buffer(jnp.ones((128,)), jnp.arange(128) < 32)  # 32 valid
  batch = loop.draw_batch(jax.random.key(1), loop.concat(real, synthetic), 40000)
  assert abs(float(batch.mean()) - 32 / 96) < 0.01


def test_correction_probability():
  np.testing.assert_allclose(loop.correction_probability(jnp.array([0.0, 1.0, 3.0, jnp.inf])),
                             [0.0, 0.5, 0.75, 1.0])


def test_replace_with_probability_on_pytrees():
  samples = {"a": jnp.zeros((1000, 2)), "b": jnp.zeros((1000,))}
  corrected = {"a": jnp.ones((1000, 2)), "b": jnp.ones((1000,))}
  mixed, replaced = loop.replace_with_probability(jax.random.key(0), samples, corrected, 1.0)
  # Whole examples are replaced: both leaves agree row by row.
  np.testing.assert_array_equal(mixed["a"][:, 0], replaced)
  np.testing.assert_array_equal(mixed["b"], replaced)
  assert 0.45 < float(replaced.mean()) < 0.55
  all_replaced, _ = loop.replace_with_probability(jax.random.key(0), samples, corrected, jnp.inf)
  assert float(all_replaced["b"].min()) == 1.0


class _Recorder:
  """Sample/correct/fit functions that record what the loop handed them."""

  def __init__(self):
    self.calls = []

  def sample(self, train_state, real, previous, key):
    self.calls.append("sample")
    return loop.make_buffer(jnp.full((3,), 2.0))

  def correct(self, key, synthetic):
    self.calls.append("correct")
    return synthetic.replace(data=synthetic.data + 1.0), {"corrected": 1}

  def fit(self, train_state, training_set, key):
    self.calls.append("fit")
    mean = jnp.sum(jnp.where(training_set.valid, training_set.data, 0.0)) / training_set.size
    return mean, {"trained_on": training_set.size}


@pytest.mark.parametrize("variant,calls,mean,size", [
    ("baseline", ["fit"], 0.0, 4),
    ("self_consuming", ["sample", "fit"], 6.0 / 7.0, 7),
    ("self_correcting", ["sample", "correct", "fit"], 9.0 / 7.0, 7),
])
def test_run_generation_variants(variant, calls, mean, size):
  recorder = _Recorder()
  state = loop.init_state(0.0, real=loop.make_buffer(jnp.zeros((4,))),
                          synthetic=loop.empty_buffer(jnp.zeros((3,)), 3), key=jax.random.key(0))
  new_state, metrics = loop.run_generation(
      state, variant=variant, sample_fn=recorder.sample, correct_fn=recorder.correct,
      fit_fn=recorder.fit)
  assert recorder.calls == calls
  np.testing.assert_allclose(new_state.train_state, mean, rtol=1e-6)
  assert int(metrics["trained_on"]) == size
  assert int(new_state.generation) == 1
  assert not np.array_equal(jax.random.key_data(new_state.key), jax.random.key_data(state.key))


def test_run_generation_rejects_unknown_variant():
  state = loop.init_state(0.0, real=loop.make_buffer(jnp.zeros((4,))),
                          synthetic=loop.empty_buffer(jnp.zeros((3,)), 3), key=jax.random.key(0))
  with pytest.raises(ConfigError, match="variant"):
    loop.run_generation(state, variant="magic", sample_fn=None, correct_fn=None, fit_fn=None)
