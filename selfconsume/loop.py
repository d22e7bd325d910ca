"""The self-consuming loop of Gillman et al. (2024), independent of the model and the data.

Generation 0 fits a model on the n real examples. Each later generation t >= 1 is

  1. sample   floor(lambda * n) synthetic examples from model t-1;
  2. correct  them: each is replaced by its corrected version with probability
              gamma / (1 + gamma), the correction operator pi_gamma = (p + gamma p*) / (1 + gamma);
  3. mix      the real and the synthetic examples into one training set;
  4. fit      model t, starting from the weights of model t-1, on that set.

The three variants differ only in steps 1-2: `baseline` skips them (lambda = 0, real data
only), `self_consuming` samples without correcting, `self_correcting` does both.

Everything here is a pure function of explicit state. The model enters through three
functions handed to `run_generation` (sample, correct, fit), so the Gaussian, digits and
motion experiments share this file; `make_generation` compiles one generation of jit-able
functions into one XLA program (the motion experiment's generation). Data lives in fixed-capacity `Buffer`s with a validity
mask, so the shapes a jitted function sees never change from one generation to the next.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp

from selfconsume.errors import ConfigError

VARIANTS = ("baseline", "self_consuming", "self_correcting")

PyTree = Any
Metrics = Mapping[str, Any]


@flax.struct.dataclass
class Buffer:
  """A fixed-capacity set of examples.

  Attributes:
    data: pytree of arrays that share a leading axis of size `capacity`.
    valid: bool (capacity,), True for the slots that hold an example.
  """
  data: PyTree
  valid: jax.Array

  @property
  def capacity(self) -> int:
    return self.valid.shape[0]

  @property
  def size(self) -> jax.Array:
    return jnp.sum(self.valid.astype(jnp.int32))


def make_buffer(data: PyTree, valid: jax.Array | None = None) -> Buffer:
  """A buffer holding `data`; all slots valid unless a mask is given."""
  capacity = jax.tree_util.tree_leaves(data)[0].shape[0]
  if valid is None:
    valid = jnp.ones((capacity,), bool)
  return Buffer(data=data, valid=jnp.asarray(valid, bool))


def empty_buffer(like: PyTree, capacity: int) -> Buffer:
  """A buffer of `capacity` zeroed, invalid slots shaped like the examples in `like`."""
  data = jax.tree_util.tree_map(
      lambda x: jnp.zeros((capacity,) + x.shape[1:], x.dtype), like)
  return Buffer(data=data, valid=jnp.zeros((capacity,), bool))


def concat(first: Buffer, second: Buffer) -> Buffer:
  """The union of two buffers (the paper concatenates real and synthetic sets)."""
  data = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), first.data, second.data)
  return Buffer(data=data, valid=jnp.concatenate([first.valid, second.valid]))


def draw_batch(key: jax.Array, buffer: Buffer, batch_size: int) -> PyTree:
  """`batch_size` examples drawn uniformly, with replacement, from the valid slots.

  Uniform over the union is what shuffling the concatenated dataset does on average; drawing
  with replacement keeps the batch shape fixed whatever the number of valid examples.
  """
  logits = jnp.where(buffer.valid, 0.0, -jnp.inf)
  index = jax.random.categorical(key, logits, shape=(batch_size,))
  return jax.tree_util.tree_map(lambda x: x[index], buffer.data)


def num_synthetic(synthetic_ratio: float, n: int) -> int:
  """floor(lambda * n): how many synthetic examples a generation adds to n real ones."""
  if synthetic_ratio < 0:
    raise ConfigError(f"synthetic_ratio (lambda) must be >= 0, got {synthetic_ratio}")
  # The small epsilon keeps e.g. 0.7 * 10 = 6.999... from flooring to 6.
  return int(math.floor(synthetic_ratio * n + 1e-9))


def correction_probability(gamma: float | jax.Array) -> jax.Array:
  """gamma / (1 + gamma): the share of samples pi_gamma replaces; 1 for gamma = inf."""
  gamma = jnp.asarray(gamma, jnp.float32)
  return jnp.where(jnp.isinf(gamma), 1.0, gamma / (1.0 + gamma))


def replace_with_probability(key: jax.Array, samples: PyTree, corrected: PyTree,
                             gamma: float | jax.Array) -> tuple[PyTree, jax.Array]:
  """Each example of `samples` becomes its `corrected` version with prob gamma/(1+gamma).

  Args:
    key: PRNG key.
    samples, corrected: pytrees of arrays with the same structure and a leading batch axis.
    gamma: correction strength >= 0 (inf: replace all).

  Returns:
    (mixed, replaced) where replaced is bool (batch,).
  """
  batch = jax.tree_util.tree_leaves(samples)[0].shape[0]
  replaced = jax.random.uniform(key, (batch,)) < correction_probability(gamma)

  def pick(s, c):
    mask = replaced.reshape((batch,) + (1,) * (s.ndim - 1))
    return jnp.where(mask, c, s)

  return jax.tree_util.tree_map(pick, samples, corrected), replaced


@flax.struct.dataclass
class LoopState:
  """Everything the loop carries from one generation to the next.

  Attributes:
    train_state: the model (parameters, optimizer state, ...) after the last generation.
    real: Buffer of the n real training examples (never changes).
    synthetic: Buffer of the synthetic examples of the last generation.
    key: PRNG key for the next generation.
    generation: int32 scalar, the number of the last finished generation.
  """
  train_state: PyTree
  real: Buffer
  synthetic: Buffer
  key: jax.Array
  generation: jax.Array


def init_state(train_state: PyTree, real: Buffer, synthetic: Buffer, key: jax.Array
               ) -> LoopState:
  """The state after generation 0 (the model fitted on the real data)."""
  return LoopState(train_state=train_state, real=real, synthetic=synthetic, key=key,
                   generation=jnp.zeros((), jnp.int32))


# model_{t-1}, real buffer (e.g. the prompts of conditional models), previous synthetic
# buffer (its capacity is the number to draw), key -> new synthetic buffer
SampleFn = Callable[[PyTree, Buffer, Buffer, jax.Array], Buffer]
# key, synthetic buffer -> (corrected buffer, metrics)
CorrectFn = Callable[[jax.Array, Buffer], tuple[Buffer, Metrics]]
# model_{t-1}, training set (real + synthetic), key -> (model_t, metrics)
FitFn = Callable[[PyTree, Buffer, jax.Array], tuple[PyTree, Metrics]]


def run_generation(state: LoopState, *, variant: str, sample_fn: SampleFn,
                   correct_fn: CorrectFn | None, fit_fn: FitFn, return_samples: bool = False
                   ) -> tuple[LoopState, dict[str, Any]] | tuple[LoopState, dict[str, Any],
                                                                 Buffer | None]:
  """One generation of the loop: sample -> correct -> mix -> fit.

  Pure: jit it (with `variant` and the functions static) when the functions are jit-able
  (`make_generation`), or call it eagerly when they run their own jitted pieces.

  Args:
    state: the loop state after generation t-1.
    variant: one of VARIANTS.
    sample_fn: draws synthetic examples from model t-1. It receives the real buffer (a
      conditional model draws its prompts from it) and the previous synthetic buffer, so
      experiments that accumulate synthetic sets across generations (the Gaussian toy) can.
    correct_fn: the correction operator pi_gamma; used by `self_correcting` only.
    fit_fn: fits model t, warm-started from model t-1, on the real + synthetic examples.

    return_samples: also return the synthetic buffer as sampled, before correction
      (None for baseline), e.g. to show what the correction changed.

  Returns:
    (state after generation t, metrics of sampling, correction and fitting), and the
    samples when `return_samples`.
  """
  if variant not in VARIANTS:
    raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
  key, sample_key, correct_key, fit_key = jax.random.split(state.key, 4)
  metrics: dict[str, Any] = {}
  synthetic = state.synthetic
  sampled = None
  if variant == "baseline":
    training_set = state.real
  else:
    synthetic = sampled = sample_fn(state.train_state, state.real, state.synthetic,
                                    sample_key)
    if variant == "self_correcting":
      if correct_fn is None:
        raise ConfigError("the self_correcting variant needs a correction function")
      synthetic, correction_metrics = correct_fn(correct_key, synthetic)
      metrics.update(correction_metrics)
    training_set = concat(state.real, synthetic)
  train_state, fit_metrics = fit_fn(state.train_state, training_set, fit_key)
  metrics.update(fit_metrics)
  new_state = LoopState(train_state=train_state, real=state.real, synthetic=synthetic,
                        key=key, generation=state.generation + 1)
  if return_samples:
    return new_state, metrics, sampled
  return new_state, metrics


GenerationFn = Callable[[LoopState], tuple[LoopState, dict[str, Any], Buffer | None]]


def make_generation(*, variant: str, sample_fn: SampleFn, correct_fn: CorrectFn | None,
                    fit_fn: FitFn, fused: bool = True) -> GenerationFn:
  """One generation as a compiled function: state -> (state, metrics, samples).

  The functions must be jit-able. `fused` compiles the whole generation (sample -> correct
  -> mix -> fit) into one program: the host hands it the state and waits once. Otherwise
  the stages are compiled one by one and the host waits for each before starting the next
  (what an eager driver does); same stages, same keys, so the two differ only in time and
  in the last bits of floating-point rounding XLA's fusion may change.
  """
  if variant not in VARIANTS:
    raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
  if fused:
    return jax.jit(functools.partial(run_generation, variant=variant, sample_fn=sample_fn,
                                     correct_fn=correct_fn, fit_fn=fit_fn,
                                     return_samples=True))

  def staged(fn):
    compiled = jax.jit(fn)
    return lambda *args: jax.block_until_ready(compiled(*args))  # the host waits here

  return functools.partial(
      run_generation, variant=variant, sample_fn=staged(sample_fn),
      correct_fn=None if correct_fn is None else staged(correct_fn), fit_fn=staged(fit_fn),
      return_samples=True)
