"""Handwritten digits for the toy loop: scikit-learn's bundled 8x8 digits, or MNIST from disk.

MNIST cannot be downloaded on the machines this project runs on, but scikit-learn ships the
1,797 8x8 digits of the UCI "optdigits" set offline; they are the default. Real MNIST is read
from local files when a user has them: either a directory with the four IDX files
(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, optionally .gz) or one .npz with x_train, y_train, x_test, y_test
(the layout of keras' mnist.npz).

Images are float32 (N, H, W, 1) scaled to [-1, 1]; labels int32 (N,) in 0..9.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os

import numpy as np
from sklearn import datasets

from selfconsume.errors import ConfigError
from selfconsume.errors import DataError

NUM_CLASSES = 10
SOURCES = ("sklearn", "mnist")

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass(frozen=True)
class DigitsData:
  """A labelled train/test split of digit images.

  Attributes:
    train_images: float32 (N, H, W, 1) in [-1, 1].
    train_labels: int32 (N,) in 0..num_classes-1.
    test_images: float32 (M, H, W, 1) in [-1, 1].
    test_labels: int32 (M,).
    num_classes: number of classes (10).
    source: where the data came from (a description, for logs and summaries).
  """
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  source: str

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])

  def fingerprint(self) -> str:
    """A short hash of the contents: caches (the classifier) are keyed by it."""
    h = hashlib.sha256()
    for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
      h.update(str(array.shape).encode())
      h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def _to_unit_range(pixels: np.ndarray, max_value: float) -> np.ndarray:
  """Maps pixel values in [0, max_value] to float32 [-1, 1]."""
  return (pixels.astype(np.float32) / max_value * 2.0 - 1.0).astype(np.float32)


def _check_images_labels(images: np.ndarray, labels: np.ndarray, what: str) -> None:
  if images.ndim != 3:
    raise DataError(f"{what}: images must have shape (N, H, W), got {images.shape}")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise DataError(f"{what}: expected {images.shape[0]} labels of shape (N,), got "
                    f"{labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise DataError(f"{what}: labels must lie in 0..{NUM_CLASSES - 1}, got range "
                    f"{labels.min()}..{labels.max()}")


def _read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (unsigned bytes; 1-D labels or 3-D images), gzipped or not."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read IDX file {path}: {e}") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise DataError(f"{path} is not an IDX file (bad magic number)")
  if raw[2] != 0x08:
    raise DataError(f"{path}: expected unsigned-byte data (type 0x08), got 0x{raw[2]:02x}")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path}: truncated header")
  dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = int(np.prod(dims)) if dims else 0
  if len(raw) - header != expected:
    raise DataError(f"{path}: header says shape {dims} ({expected} bytes) but the file holds "
                    f"{len(raw) - header} bytes of data")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _find_idx(directory: str, stem: str) -> str:
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
               stem.replace("-idx", ".idx") + ".gz"):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return path
  raise DataError(f"MNIST directory {directory} has no file {stem} (or {stem}.gz); expected "
                  f"the four IDX files {sorted(_IDX_FILES.values())}")


def load_mnist(path: str) -> DigitsData:
  """Reads MNIST from a directory of IDX files or from one .npz file.

  Args:
    path: a directory with train-images-idx3-ubyte, train-labels-idx1-ubyte,
      t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz), or a .npz
      with arrays x_train (N, 28, 28) uint8, y_train (N,), x_test, y_test.

  Returns:
    DigitsData with images (N, 28, 28, 1) in [-1, 1].

  Raises:
    DataError: naming the file, when it is missing or malformed.
  """
  if not os.path.exists(path):
    raise DataError(f"MNIST path {path} does not exist (give a directory of IDX files or an "
                    f".npz with {', '.join(_NPZ_KEYS)})")
  if os.path.isdir(path):
    arrays = {k: _read_idx(_find_idx(path, stem)) for k, stem in _IDX_FILES.items()}
  else:
    try:
      with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _NPZ_KEYS if k not in npz.files]
        if missing:
          raise DataError(f"{path} lacks arrays {missing}; it holds {sorted(npz.files)}")
        arrays = dict(zip(("train_images", "train_labels", "test_images", "test_labels"),
                          (np.asarray(npz[k]) for k in _NPZ_KEYS)))
    except (OSError, ValueError) as e:
      if isinstance(e, DataError):
        raise
      raise DataError(f"cannot read {path} as an .npz file: {e}") from e
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    _check_images_labels(images, labels, f"{path} ({split})")
    if images.dtype != np.uint8 and (images.min() < 0 or images.max() > 255):
      raise DataError(f"{path} ({split}): pixel values must lie in 0..255, got range "
                      f"{images.min()}..{images.max()}")
  return DigitsData(
      train_images=_to_unit_range(arrays["train_images"], 255.0)[..., None],
      train_labels=arrays["train_labels"].astype(np.int32),
      test_images=_to_unit_range(arrays["test_images"], 255.0)[..., None],
      test_labels=arrays["test_labels"].astype(np.int32),
      num_classes=NUM_CLASSES,
      source=f"mnist:{os.path.abspath(path)}")


def load_sklearn_digits(test_fraction: float = 0.2, seed: int = 0) -> DigitsData:
  """scikit-learn's bundled 1,797 8x8 digits (pixel values 0..16), split at random.

  Args:
    test_fraction: share of the images held out as the test set (stratified by class).
    seed: the split's seed.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ConfigError(f"data.test_fraction must lie in (0, 1), got {test_fraction}")
  digits = datasets.load_digits()
  images = _to_unit_range(digits.images, 16.0)[..., None]
  labels = digits.target.astype(np.int32)
  rng = np.random.default_rng(seed)
  test_index = []
  for c in range(NUM_CLASSES):
    members = rng.permutation(np.flatnonzero(labels == c))
    test_index.extend(members[:int(round(test_fraction * len(members)))])
  is_test = np.zeros(len(labels), bool)
  is_test[np.asarray(test_index)] = True
  return DigitsData(train_images=images[~is_test], train_labels=labels[~is_test],
                    test_images=images[is_test], test_labels=labels[is_test],
                    num_classes=NUM_CLASSES, source="sklearn:load_digits")


def pad_images(images: np.ndarray, size: int) -> np.ndarray:
  """Pads (N, H, W, 1) images with the background value -1 to (N, size, size, 1), centred.

  The U-Net halves the resolution at each level, so sizes must be divisible by 2^levels;
  padding (rather than resizing) leaves the digits' pixels untouched.
  """
  h, w = images.shape[1:3]
  if size < max(h, w):
    raise ConfigError(f"data.pad_to = {size} is smaller than the images ({h}x{w})")
  top, left = (size - h) // 2, (size - w) // 2
  return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)),
                constant_values=-1.0)


def subsample(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
  """A class-stratified random `fraction` of the examples (the paper trains on 20% of MNIST)."""
  if not 0.0 < fraction <= 1.0:
    raise ConfigError(f"data.train_fraction must lie in (0, 1], got {fraction}")
  if fraction == 1.0:
    return images, labels
  rng = np.random.default_rng(seed)
  keep = []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    keep.extend(members[:max(1, int(round(fraction * len(members))))])
  keep = np.sort(np.asarray(keep))
  return images[keep], labels[keep]


def load(source: str = "sklearn", path: str = "", *, test_fraction: float = 0.2,
         pad_to: int = 0, seed: int = 0) -> DigitsData:
  """Loads the digits named by a config.

  Args:
    source: 'sklearn' (the bundled 8x8 digits) or 'mnist' (local files at `path`).
    path: for 'mnist', the IDX directory or .npz file.
    test_fraction: for 'sklearn', the held-out share.
    pad_to: if > 0, pad images to pad_to x pad_to with the background value.
    seed: seed of the sklearn split.
  """
  if source == "sklearn":
    data = load_sklearn_digits(test_fraction, seed)
  elif source == "mnist":
    if not path:
      raise ConfigError("data.source = 'mnist' needs --config.data.path (a directory of IDX "
                        "files or an .npz file)")
    data = load_mnist(path)
  else:
    raise ConfigError(f"data.source must be one of {SOURCES}, got {source!r}")
  if pad_to:
    data = dataclasses.replace(data, train_images=pad_images(data.train_images, pad_to),
                               test_images=pad_images(data.test_images, pad_to))
  return data
