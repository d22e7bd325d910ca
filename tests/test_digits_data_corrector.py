"""Tests of the digits data loaders and the k-means corrector."""

from __future__ import annotations

import gzip

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume import loop
from selfconsume.digits import corrector
from selfconsume.digits import data as data_lib
from selfconsume.errors import DataError


@pytest.fixture(scope="module")
def digits():
  return data_lib.load("sklearn")


@pytest.fixture(scope="module")
def centres(digits):
  return corrector.fit_centres(digits.train_images, digits.train_labels, digits.num_classes,
                               clusters_per_class=16, seed=0)


def test_sklearn_digits_are_scaled_and_split(digits):
  assert digits.train_images.shape[1:] == (8, 8, 1)
  assert digits.train_images.shape[0] + digits.test_images.shape[0] == 1797
  assert digits.train_images.min() == -1.0 and digits.train_images.max() == 1.0
  assert set(np.unique(digits.test_labels)) == set(range(10))


def test_subsample_keeps_the_fraction_per_class(digits):
  images, labels = data_lib.subsample(digits.train_images, digits.train_labels, 0.2, seed=0)
  assert abs(len(labels) - 0.2 * len(digits.train_labels)) <= 10
  counts = np.bincount(labels, minlength=10)
  assert counts.min() >= 25 and images.shape[0] == labels.shape[0]


def test_pad_keeps_pixels_and_fills_background(digits):
  padded = data_lib.pad_images(digits.train_images[:3], 12)
  assert padded.shape == (3, 12, 12, 1)
  np.testing.assert_array_equal(padded[:, 2:10, 2:10], digits.train_images[:3])
  assert np.all(padded[:, :2] == -1.0)


def test_corrector_maps_a_real_image_to_a_centre_of_its_own_class(digits, centres):
  assert centres.shape == (10, 16, 8, 8, 1)
  images = jnp.asarray(digits.test_images[:40])
  labels = jnp.asarray(digits.test_labels[:40])
  snapped = np.asarray(corrector.snap_to_centres(images, labels, jnp.asarray(centres)))
  for image, label, out in zip(np.asarray(images), np.asarray(labels), snapped):
    own = centres[label].reshape(16, -1)
    distances = np.linalg.norm(own - out.reshape(1, -1), axis=1)
    assert distances.min() < 1e-5  # it is one of the centres of its class ...
    nearest = np.argmin(np.linalg.norm(own - image.reshape(1, -1), axis=1))
    np.testing.assert_allclose(out.reshape(-1), own[nearest], atol=1e-5)  # ... the nearest.


def test_correction_strength_gamma(digits, centres):
  buffer = loop.make_buffer({"image": jnp.asarray(digits.test_images[:200]),
                             "label": jnp.asarray(digits.test_labels[:200])})
  key = jax.random.PRNGKey(0)
  untouched, metrics = corrector.make_correct_fn(centres, 0.0)(key, buffer)
  np.testing.assert_array_equal(untouched.data["image"], buffer.data["image"])
  assert float(metrics["corrected_fraction"]) == 0.0
  everything, metrics = corrector.make_correct_fn(centres, float("inf"))(key, buffer)
  assert float(metrics["corrected_fraction"]) == 1.0
  assert not np.allclose(everything.data["image"], buffer.data["image"])
  _, metrics = corrector.make_correct_fn(centres, 1.0)(key, buffer)
  assert 0.35 < float(metrics["corrected_fraction"]) < 0.65


def _idx_bytes(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _fake_mnist(rng, num):
  return (rng.integers(0, 256, (num, 28, 28)).astype(np.uint8),
          rng.integers(0, 10, num).astype(np.uint8))


def test_mnist_from_idx_directory_and_npz(tmp_path):
  rng = np.random.default_rng(0)
  x_train, y_train = _fake_mnist(rng, 30)
  x_test, y_test = _fake_mnist(rng, 12)
  idx = tmp_path / "idx"
  idx.mkdir()
  (idx / "train-images-idx3-ubyte").write_bytes(_idx_bytes(x_train))
  with gzip.open(idx / "train-labels-idx1-ubyte.gz", "wb") as f:
    f.write(_idx_bytes(y_train))
  (idx / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(x_test))
  (idx / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(y_test))
  from_idx = data_lib.load("mnist", str(idx))
  assert from_idx.train_images.shape == (30, 28, 28, 1)
  np.testing.assert_array_equal(from_idx.test_labels, y_test)
  np.testing.assert_allclose(from_idx.train_images[..., 0], x_train / 255.0 * 2 - 1, atol=1e-6)

  npz = tmp_path / "mnist.npz"
  np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  from_npz = data_lib.load("mnist", str(npz))
  np.testing.assert_array_equal(from_npz.train_images, from_idx.train_images)


def test_malformed_mnist_files_name_the_file(tmp_path):
  rng = np.random.default_rng(0)
  x, y = _fake_mnist(rng, 5)
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "train-images-idx3-ubyte").write_bytes(_idx_bytes(x)[:-7])  # truncated
  for name, array in (("train-labels-idx1-ubyte", y), ("t10k-images-idx3-ubyte", x),
                      ("t10k-labels-idx1-ubyte", y)):
    (bad / name).write_bytes(_idx_bytes(array))
  with pytest.raises(DataError, match="train-images-idx3-ubyte"):
    data_lib.load("mnist", str(bad))
  (bad / "t10k-labels-idx1-ubyte").unlink()
  (bad / "train-images-idx3-ubyte").write_bytes(_idx_bytes(x))
  with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
    data_lib.load("mnist", str(bad))
  npz = tmp_path / "wrong.npz"
  np.savez(npz, x_train=x, y_train=y)
  with pytest.raises(DataError, match="wrong.npz"):
    data_lib.load("mnist", str(npz))
  with pytest.raises(DataError, match="nowhere"):
    data_lib.load("mnist", str(tmp_path / "nowhere"))
