"""One generation as one compiled program (`loop.make_generation`): the fused program and
the staged stages compute the same generation, and the fused one is traced once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume import loop


class _Toy:
  """A 1-D Gaussian 'model' (its mean) with stages that count how often they are traced."""

  def __init__(self):
    self.traces = {"sample": 0, "correct": 0, "fit": 0}

  def sample(self, mean, real, previous, key):
    self.traces["sample"] += 1
    draws = mean + jax.random.normal(key, (previous.capacity,))
    return loop.make_buffer(draws)

  def correct(self, key, synthetic):
    self.traces["correct"] += 1
    # Halfway back towards zero, the 'truth'.
    return loop.Buffer(data=0.5 * synthetic.data, valid=synthetic.valid), {
        "shift": jnp.mean(jnp.abs(synthetic.data))}

  def fit(self, mean, training_set, key):
    self.traces["fit"] += 1
    weights = training_set.valid.astype(jnp.float32)
    new_mean = jnp.sum(weights * training_set.data) / jnp.sum(weights)
    return new_mean, {"train_loss": jnp.abs(new_mean - mean)}


def _state(seed: int = 0) -> loop.LoopState:
  real = loop.make_buffer(jnp.linspace(-1.0, 1.0, 8) + 0.3)
  synthetic = loop.empty_buffer(real.data, 8)
  return loop.init_state(jnp.asarray(2.0, jnp.float32), real, synthetic,
                         jax.random.PRNGKey(seed))


@pytest.mark.parametrize("variant", loop.VARIANTS)
def test_fused_and_staged_generations_agree(variant):
  fused_toy, staged_toy = _Toy(), _Toy()
  fused = loop.make_generation(variant=variant, sample_fn=fused_toy.sample,
                               correct_fn=fused_toy.correct, fit_fn=fused_toy.fit)
  staged = loop.make_generation(variant=variant, sample_fn=staged_toy.sample,
                                correct_fn=staged_toy.correct, fit_fn=staged_toy.fit,
                                fused=False)
  a_state, a_metrics, a_samples = fused(_state())
  b_state, b_metrics, b_samples = staged(_state())
  assert int(a_state.generation) == int(b_state.generation) == 1
  np.testing.assert_allclose(a_state.train_state, b_state.train_state, rtol=1e-6)
  assert set(a_metrics) == set(b_metrics)
  for name in a_metrics:
    np.testing.assert_allclose(a_metrics[name], b_metrics[name], rtol=1e-6)
  if variant == "baseline":
    assert a_samples is None and b_samples is None
    # Baseline trains on the real data only: the mean of the real set.
    np.testing.assert_allclose(a_state.train_state, 0.3, atol=1e-6)
  else:
    np.testing.assert_allclose(a_samples.data, b_samples.data, rtol=1e-6)
    corrected = variant == "self_correcting"
    # The state carries what was trained on: the samples, halved when corrected.
    np.testing.assert_allclose(a_state.synthetic.data,
                               a_samples.data * (0.5 if corrected else 1.0), rtol=1e-6)
    assert ("shift" in a_metrics) == corrected


def test_fused_generation_is_one_program_traced_once():
  toy = _Toy()
  generation = loop.make_generation(variant="self_correcting", sample_fn=toy.sample,
                                    correct_fn=toy.correct, fit_fn=toy.fit)
  state = _state()
  means = []
  for g in range(1, 4):
    state = state.replace(key=jax.random.PRNGKey(g))
    state, _, _ = generation(state)
    means.append(float(state.train_state))
  # Three generations, one trace of each stage: the same compiled program every time.
  assert toy.traces == {"sample": 1, "correct": 1, "fit": 1}
  assert len(set(means)) == 3


def test_make_generation_rejects_unknown_variant():
  toy = _Toy()
  with pytest.raises(Exception, match="variant must be one of"):
    loop.make_generation(variant="magic", sample_fn=toy.sample, correct_fn=toy.correct,
                         fit_fn=toy.fit)
