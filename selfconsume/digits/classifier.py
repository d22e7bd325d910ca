"""A LeNet-style digit classifier whose penultimate features give the toy's FID and diversity.

The paper scores its MNIST samples with FID on LeNet features. No pretrained network can be
downloaded here, so the classifier is trained on the real training images of the run (a few
seconds on the 8x8 digits) and cached in the workdir, keyed by the data's fingerprint and the
classifier's config: reruns and resumed runs reuse it and so score on the same features.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from selfconsume import outputs
from selfconsume.digits.data import DigitsData
from selfconsume.errors import CheckpointError


class LeNet(nn.Module):
  """Conv-pool-conv-pool-dense-dense; (B, H, W, 1) -> (logits (B, classes), features (B, F))."""
  num_classes: int = 10
  features: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = nn.relu(nn.Conv(32, (3, 3))(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(64, (3, 3))(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    features = nn.relu(nn.Dense(self.features)(x))
    return nn.Dense(self.num_classes)(features), features


def train_classifier(data: DigitsData, *, steps: int = 600, batch_size: int = 128,
                     learning_rate: float = 1e-3, features: int = 128, seed: int = 0
                     ) -> dict[str, Any]:
  """Trains LeNet on data.train_images with Adam and light noise augmentation.

  Returns:
    The Flax params.
  """
  model = LeNet(num_classes=data.num_classes, features=features)
  key = jax.random.PRNGKey(seed)
  init_key, key = jax.random.split(key)
  params = model.init(init_key, jnp.zeros((1,) + data.image_shape))["params"]
  optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  opt_state = optimizer.init(params)
  images = jnp.asarray(data.train_images)
  labels = jnp.asarray(data.train_labels)

  def loss_fn(params, x, y):
    logits, _ = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, key):
    index_key, noise_key = jax.random.split(key)
    index = jax.random.randint(index_key, (batch_size,), 0, images.shape[0])
    # Mild pixel noise: generated digits are never exactly clean, and the features should
    # not be thrown off by small deviations.
    x = images[index] + 0.1 * jax.random.normal(noise_key, (batch_size,) + images.shape[1:])
    grads = jax.grad(loss_fn)(params, x, labels[index])
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  # A Python loop over one jitted step: XLA:CPU runs convolution gradients inside a
  # device-side loop far slower.
  for i in range(steps):
    params, opt_state = step(params, opt_state, jax.random.fold_in(key, i))
  return params


def make_apply(num_classes: int, features: int = 128):
  """A jitted (params, images (B, H, W, 1)) -> (logits (B, classes), features (B, F))."""
  model = LeNet(num_classes=num_classes, features=features)
  return jax.jit(lambda params, x: model.apply({"params": params}, x))


def embed(apply_fn, params, images: np.ndarray, batch_size: int = 512
          ) -> tuple[np.ndarray, np.ndarray]:
  """Logits (N, classes) and penultimate features (N, F) of `images` (N, H, W, 1), batched.

  The last batch is padded to `batch_size` so the jitted function compiles once.
  """
  logits, feats = [], []
  for start in range(0, images.shape[0], batch_size):
    chunk = np.asarray(images[start:start + batch_size], np.float32)
    n = chunk.shape[0]
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    l, f = apply_fn(params, chunk)
    logits.append(np.asarray(l)[:n])
    feats.append(np.asarray(f)[:n])
  return np.concatenate(logits), np.concatenate(feats)


def accuracy(apply_fn, params, images: np.ndarray, labels: np.ndarray) -> float:
  logits, _ = embed(apply_fn, params, images)
  return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def get_or_train(data: DigitsData, cache_dir: str, *, steps: int = 600,
                 batch_size: int = 128, learning_rate: float = 1e-3, features: int = 128,
                 seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
  """The classifier for `data`, loaded from `cache_dir` or trained and saved there.

  Returns:
    (params, info) with info = {'fingerprint', 'test_accuracy', 'config'}.

  Raises:
    CheckpointError: if the cached file cannot be read.
  """
  settings = dict(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                  features=features, seed=seed)
  fingerprint = data.fingerprint()
  params_path = os.path.join(cache_dir, "classifier.msgpack")
  info_path = os.path.join(cache_dir, "classifier.json")
  model = LeNet(num_classes=data.num_classes, features=features)
  template = model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + data.image_shape))["params"]
  if os.path.exists(params_path) and os.path.exists(info_path):
    info = outputs.read_json(info_path)
    if info.get("fingerprint") == fingerprint and info.get("config") == settings:
      try:
        with open(params_path, "rb") as f:
          params = flax.serialization.from_bytes(template, f.read())
      except (ValueError, KeyError) as e:
        raise CheckpointError(f"cached classifier {params_path} is corrupt ({e}); delete it "
                              f"to retrain") from e
      return params, info
  params = train_classifier(data, **settings)
  apply_fn = make_apply(data.num_classes, features)
  info = {"fingerprint": fingerprint, "config": settings,
          "test_accuracy": accuracy(apply_fn, params, data.test_images, data.test_labels)}
  os.makedirs(cache_dir, exist_ok=True)
  tmp = params_path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  os.replace(tmp, params_path)
  outputs.write_json(info_path, info)
  return params, info
