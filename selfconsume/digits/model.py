"""The digits DDPM: training state, a jitted fitting loop over a Buffer, guided sampling.

The denoiser is `ConditionalUNet` predicting the noise eps (Ho et al. 2020). Training drops
the label with probability `label_dropout` (replaced by the "no label" token) so that the
same network gives the unconditional prediction classifier-free guidance needs; sampling uses
eps = uncond + (1 + w) (cond - uncond) through `selfconsume.diffusion.guided`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from selfconsume import diffusion
from selfconsume import loop
from selfconsume.digits.unet import ConditionalUNet
from selfconsume.errors import NonFiniteError


@flax.struct.dataclass
class TrainState:
  """Parameters and Adam moments of the denoiser.

  Attributes:
    step: int32 scalar, optimizer steps taken over all generations.
    params: the U-Net's parameters.
    opt_state: optax state of the gradient transformation (learning rate applied apart).
  """
  step: jax.Array
  params: Any
  opt_state: Any


def make_optimizer(grad_clip: float = 1.0) -> optax.GradientTransformation:
  """Clipped Adam *without* the learning rate: `fit` scales the updates itself, so that the
  same optimizer state carries over between the decaying generation-0 schedule and the
  constant fine-tuning rate of later generations."""
  return optax.chain(optax.clip_by_global_norm(grad_clip), optax.scale_by_adam())


def create_train_state(key: jax.Array, model: ConditionalUNet,
                       image_shape: tuple[int, int, int]) -> TrainState:
  """Fresh parameters for images of `image_shape` (H, W, C)."""
  params = model.init(key, jnp.zeros((1,) + tuple(image_shape)), jnp.zeros((1,), jnp.int32),
                      jnp.zeros((1,), jnp.int32))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=make_optimizer().init(params))


FitFn = Callable[..., tuple[TrainState, dict[str, float]]]


def make_fit(model: ConditionalUNet, schedule: diffusion.Schedule, *, batch_size: int,
             label_dropout: float) -> FitFn:
  """fit(train_state, buffer, key, num_steps, lr_start, lr_end) -> (state, {'loss'}).

  Runs `num_steps` Adam steps on batches drawn with `loop.draw_batch` from the valid slots of
  `buffer` ({'image' (N, H, W, C), 'label' (N,)}), the learning rate going linearly from
  lr_start to lr_end. One jitted step is called from Python: XLA:CPU runs convolution
  gradients inside a device-side while loop far slower than as a standalone computation.
  The step compiles once per buffer capacity.
  """
  optimizer = make_optimizer()
  null_label = model.num_classes

  def loss_fn(params, images, labels, key):
    drop_key, loss_key = jax.random.split(key)
    drop = jax.random.uniform(drop_key, labels.shape) < label_dropout
    labels = jnp.where(drop, null_label, labels)
    predict = lambda x_t, t: model.apply({"params": params}, x_t, t, labels)
    loss, _ = diffusion.training_loss(predict, schedule, images, loss_key, prediction="eps")
    return loss

  @jax.jit
  def train_step(state: TrainState, buffer: loop.Buffer, key: jax.Array, lr: jax.Array
                 ) -> tuple[TrainState, jax.Array]:
    batch_key, loss_key = jax.random.split(key)
    batch = loop.draw_batch(batch_key, buffer, batch_size)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch["image"], batch["label"],
                                              loss_key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    updates = jax.tree_util.tree_map(lambda u: -lr * u, updates)
    params = optax.apply_updates(state.params, updates)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), loss

  def fit(state: TrainState, buffer: loop.Buffer, key: jax.Array, num_steps: int,
          lr_start: float, lr_end: float) -> tuple[TrainState, dict[str, float]]:
    losses = []
    for i in range(num_steps):
      lr = lr_start + (lr_end - lr_start) * i / max(num_steps, 1)
      state, loss = train_step(state, buffer, jax.random.fold_in(key, i),
                               jnp.asarray(lr, jnp.float32))
      losses.append(loss)
    loss = float(jnp.mean(jnp.stack(losses))) if losses else float("nan")
    if losses and not np.isfinite(loss):
      raise NonFiniteError(f"the digits DDPM's training loss is {loss}")
    return state, {"loss": loss}

  return fit


def steps_per_epochs(num_examples: int, batch_size: int, epochs: float) -> int:
  """Optimizer steps that see `epochs` passes over `num_examples` examples (at least 1)."""
  return max(1, int(math.ceil(epochs * num_examples / batch_size)))


SampleImagesFn = Callable[[Any, np.ndarray, jax.Array], np.ndarray]


def make_sampler(model: ConditionalUNet, schedule: diffusion.Schedule, *,
                 image_shape: tuple[int, int, int], guidance: float, method: str,
                 num_steps: int, eta: float = 0.0, chunk_size: int = 256
                 ) -> SampleImagesFn:
  """sample_images(params, labels int (M,), key) -> float32 images (M, H, W, C) in [-1, 1].

  Samples in chunks of `chunk_size` (the last one padded) with one jitted, guided sampler so
  that every generation, variant and lambda reuses a single compiled function.

  Args:
    guidance: the paper's w; the guided prediction is uncond + (1 + w) (cond - uncond).
    method, num_steps, eta: see `selfconsume.diffusion.sample` (respaced DDIM / DDPM).
  """
  null_label = model.num_classes

  @jax.jit
  def sample_chunk(params, labels, key):
    cond = lambda x_t, t: model.apply({"params": params}, x_t, t, labels)
    uncond = lambda x_t, t: model.apply({"params": params}, x_t, t,
                                        jnp.full_like(labels, null_label))
    predict = diffusion.guided(cond, uncond, 1.0 + guidance)
    images = diffusion.sample(predict, schedule, (labels.shape[0],) + tuple(image_shape), key,
                              prediction="eps", method=method, num_steps=num_steps, eta=eta,
                              clip_x0=1.0)
    return jnp.clip(images, -1.0, 1.0)

  def sample_images(params, labels: np.ndarray, key: jax.Array) -> np.ndarray:
    labels = np.asarray(labels, np.int32)
    out = []
    for index, start in enumerate(range(0, labels.shape[0], chunk_size)):
      chunk = labels[start:start + chunk_size]
      n = chunk.shape[0]
      padded = np.concatenate([chunk, np.zeros(chunk_size - n, np.int32)])
      images = sample_chunk(params, padded, jax.random.fold_in(key, index))
      out.append(np.asarray(images)[:n])
    images = np.concatenate(out) if out else np.zeros((0,) + tuple(image_shape), np.float32)
    if not np.all(np.isfinite(images)):
      raise NonFiniteError("the digits DDPM produced NaN or inf samples")
    return images

  return sample_images


def balanced_labels(num: int, num_classes: int, key: jax.Array | None = None) -> np.ndarray:
  """int32 (num,) labels with every class equally often (up to one), shuffled if `key`."""
  labels = np.arange(num, dtype=np.int32) % num_classes
  if key is not None:
    labels = np.asarray(jax.random.permutation(key, labels))
  return labels
