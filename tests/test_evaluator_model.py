"""The contrastive text-motion evaluator: loss, training, embedding, cache."""

from __future__ import annotations

import dataclasses
import hashlib

import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume.errors import CheckpointError, ConfigError, DataError
from selfconsume.metrics import retrieval
from selfconsume.models import evaluator as evaluator_lib

FAMILIES = ("walks", "jumps", "waves", "kicks")
SPEEDS = ("slowly", "quickly")
FRAMES = 48


@dataclasses.dataclass
class _Dataset:
  """The MotionDataset fields the evaluator reads."""
  ids: list
  motions: np.ndarray
  lengths: np.ndarray
  captions: list
  mean: np.ndarray
  std: np.ndarray
  root: str
  split: str

  def fingerprint(self) -> str:
    digest = hashlib.sha256(self.motions.tobytes())
    digest.update(repr(self.captions).encode())
    return digest.hexdigest()[:16]


def _make_dataset(num: int, seed: int) -> tuple[_Dataset, np.ndarray]:
  """Each family is an oscillation along its own random direction of the 263 features; the
  speed word doubles the frequency. Returns the dataset and (num,) family labels."""
  rng = np.random.default_rng(seed)
  directions = np.random.default_rng(99).normal(size=(len(FAMILIES), 2, 263))
  motions = np.zeros((num, FRAMES, 263), np.float32)
  lengths = rng.integers(FRAMES // 2, FRAMES + 1, num).astype(np.int32)
  families = rng.integers(len(FAMILIES), size=num)
  captions = []
  for i in range(num):
    fast = rng.integers(2)
    t = np.arange(lengths[i]) / 20.0 * 2 * np.pi * (1.0 + 1.5 * fast) + rng.uniform(0, 6.3)
    wave = np.stack([np.sin(t), np.cos(t)], -1) @ directions[families[i]]
    motions[i, :lengths[i]] = wave + 0.3 * rng.normal(size=wave.shape)
    captions.append([f"a person {FAMILIES[families[i]]} {SPEEDS[fast]}",
                     f"someone {FAMILIES[families[i]]} {SPEEDS[fast]}."])
  dataset = _Dataset([f"{seed}_{i}" for i in range(num)], motions, lengths, captions,
                     np.zeros(263, np.float32), np.ones(263, np.float32), f"/fake/{seed}",
                     "train")
  return dataset, families


def train_small_evaluator(tmp_path_factory):
  """The smoke evaluator on 256 synthetic motions, trained once per test session."""
  train, _ = _make_dataset(256, seed=0)
  cache = str(tmp_path_factory.getbasetemp() / "shared-evaluator-cache")
  evaluator = evaluator_lib.get_or_train_evaluator(train, evaluator_lib.smoke_config(), cache,
                                                   progress=False)
  return train, evaluator, cache


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  return train_small_evaluator(tmp_path_factory)


def test_contrastive_loss_prefers_aligned_pairs_and_merges_equal_captions():
  emb = jnp.eye(4)
  ids = jnp.array([[3, 4], [5, 6], [7, 8], [9, 10]])
  aligned, metrics = evaluator_lib.contrastive_loss(emb, emb, ids, 0.1)
  crossed, _ = evaluator_lib.contrastive_loss(emb, emb[::-1], ids, 0.1)
  assert float(aligned) < float(crossed) and float(metrics["accuracy"]) == 1.0
  # Rows 0 and 1 share a caption: swapping which of their motions each text lands on costs
  # nothing, whereas with distinct captions it does.
  dup = ids.at[1].set(ids[0])
  swapped = emb[jnp.array([1, 0, 2, 3])]
  loss_dup_aligned, _ = evaluator_lib.contrastive_loss(emb, emb, dup, 0.1)
  loss_dup_swapped, _ = evaluator_lib.contrastive_loss(emb, swapped, dup, 0.1)
  loss_swapped, _ = evaluator_lib.contrastive_loss(emb, swapped, ids, 0.1)
  assert float(loss_dup_swapped) == pytest.approx(float(loss_dup_aligned))
  assert float(loss_swapped) > float(aligned) + 1.0


def test_trained_evaluator_retrieves_held_out_motions(trained):
  _, evaluator, _ = trained
  test, families = _make_dataset(128, seed=1)
  motion = evaluator.embed_motions(test.motions, test.lengths)
  text = evaluator.embed_texts([c[0] for c in test.captions])
  assert motion.shape == text.shape == (128, evaluator.config.embed_dim)
  np.testing.assert_allclose(np.linalg.norm(motion, axis=1), 1.0, atol=1e-4)
  # 8 distinct captions per group of 32, so top-3 is capped near 3/4; chance is 3/32.
  top = retrieval.r_precision(text, motion)
  assert top[2] > 0.4, top
  dist = retrieval.pairwise_distances(motion, text)
  other_family = families[None, :] != families[:, None]
  own = np.diagonal(dist)
  assert np.mean(own[:, None] < dist, where=other_family) > 0.9


def test_embedding_ignores_padding_and_pads_short_inputs(trained):
  _, evaluator, _ = trained
  test, _ = _make_dataset(8, seed=2)
  base = evaluator.embed_motions(test.motions, test.lengths)
  garbage = test.motions.copy()
  for i, length in enumerate(test.lengths):
    garbage[i, length:] = 5.0
  np.testing.assert_allclose(evaluator.embed_motions(garbage, test.lengths), base, atol=1e-5)
  short = np.minimum(test.lengths, 30)
  np.testing.assert_allclose(evaluator.embed_motions(test.motions[:, :30], short),
                             evaluator.embed_motions(test.motions, short), atol=1e-5)
  with pytest.raises(DataError, match="frames"):
    evaluator.embed_motions(np.zeros((2, FRAMES + 1, 263)), np.array([10, 10]))


def test_cache_reuses_and_refuses_other_data(trained):
  train, evaluator, cache = trained
  again = evaluator_lib.get_or_train_evaluator(train, evaluator_lib.smoke_config(), cache)
  assert again.info == evaluator.info   # loaded, not retrained (same training time)
  np.testing.assert_array_equal(again.embed_texts(["a person walks slowly"]),
                                evaluator.embed_texts(["a person walks slowly"]))
  other, _ = _make_dataset(64, seed=5)
  key = evaluator_lib.cache_key(train.fingerprint(), evaluator_lib.smoke_config())
  assert key != evaluator_lib.cache_key(other.fingerprint(), evaluator_lib.smoke_config())
  with pytest.raises(CheckpointError, match="fingerprint"):
    evaluator_lib.load_evaluator(f"{cache}/evaluator-{key}", other)
  with pytest.raises(CheckpointError, match="not a complete evaluator"):
    evaluator_lib.load_evaluator(f"{cache}/missing")


def test_config_is_resolved_and_checked():
  partial = {"num_steps": 7}
  resolved = evaluator_lib.resolve_config(partial)
  assert resolved.num_steps == 7 and resolved.width == evaluator_lib.default_config().width
  with pytest.raises(ConfigError, match="unknown evaluator field 'widht'"):
    evaluator_lib.resolve_config({"widht": 3})
  with pytest.raises(ConfigError, match="divisible"):
    evaluator_lib.resolve_config({"width": 30, "num_heads": 4})
