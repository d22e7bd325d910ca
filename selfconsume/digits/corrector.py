"""The digits toy's correction function: snap a synthetic image to a k-means centre of its class.

The paper fits k-means (16 centres per digit) to the real training images of each class once,
and corrects a synthetic image of class c by replacing it with the nearest centre of class c.
With strength gamma each synthetic image is corrected with probability gamma / (1 + gamma)
(`selfconsume.loop.replace_with_probability`); gamma = inf corrects all, as the paper does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans

from selfconsume import loop
from selfconsume.errors import ConfigError


def fit_centres(images: np.ndarray, labels: np.ndarray, num_classes: int,
                clusters_per_class: int = 16, seed: int = 0) -> np.ndarray:
  """k-means centres of the real images of each class (scikit-learn, fitted once).

  Args:
    images: (N, H, W, C) real images.
    labels: int (N,) in 0..num_classes-1.
    num_classes: number of classes.
    clusters_per_class: k, the centres per class (16 in the paper).
    seed: k-means initialisation seed.

  Returns:
    float32 centres (num_classes, k, H, W, C).
  """
  images = np.asarray(images, np.float32)
  labels = np.asarray(labels)
  centres = []
  for c in range(num_classes):
    members = images[labels == c].reshape(-1, int(np.prod(images.shape[1:])))
    if members.shape[0] < clusters_per_class:
      raise ConfigError(f"class {c} has {members.shape[0]} real images, fewer than "
                        f"corrector.clusters_per_class = {clusters_per_class}")
    kmeans = KMeans(n_clusters=clusters_per_class, n_init=4, random_state=seed).fit(members)
    centres.append(kmeans.cluster_centers_.reshape((clusters_per_class,) + images.shape[1:]))
  return np.stack(centres).astype(np.float32)


def snap_to_centres(images: jax.Array, labels: jax.Array, centres: jax.Array) -> jax.Array:
  """Replaces each image by the nearest (Euclidean) centre of its own class.

  Args:
    images: (B, H, W, C).
    labels: int (B,).
    centres: (num_classes, k, H, W, C).

  Returns:
    (B, H, W, C): centres[labels[i], argmin_j |images[i] - centres[labels[i], j]|].
  """
  own = centres[labels]  # (B, k, H, W, C)
  distances = jnp.sum(jnp.square(own - images[:, None]), axis=(2, 3, 4))  # (B, k)
  nearest = jnp.argmin(distances, axis=1)
  return jnp.take_along_axis(own, nearest[:, None, None, None, None], axis=1)[:, 0]


def make_correct_fn(centres: jax.Array, gamma: float) -> loop.CorrectFn:
  """The loop's correction function pi_gamma for buffers of {'image', 'label'}.

  Returns:
    correct_fn(key, buffer) -> (buffer with each valid image snapped with probability
    gamma / (1 + gamma), {'corrected_fraction', 'correction_distance'}).
  """
  centres = jnp.asarray(centres)

  def correct_fn(key: jax.Array, buffer: loop.Buffer) -> tuple[loop.Buffer, dict[str, Any]]:
    images, labels = buffer.data["image"], buffer.data["label"]
    snapped = snap_to_centres(images, labels, centres)
    mixed, replaced = loop.replace_with_probability(key, images, snapped, gamma)
    valid = buffer.valid.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(valid), 1.0)
    distance = jnp.sqrt(jnp.sum(jnp.square(snapped - images), axis=(1, 2, 3)))
    metrics = {
        "corrected_fraction": jnp.sum(replaced * valid) / count,
        # How far the samples were from the real data's centres: a drift signal of its own.
        "correction_distance": jnp.sum(distance * valid) / count,
    }
    data = dict(buffer.data, image=mixed)
    return loop.Buffer(data=data, valid=buffer.valid), metrics

  return correct_fn
