"""The contrastive text-motion evaluator: loss, training, embedding, cache."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import filelock
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume.errors import CheckpointError, ConfigError, DataError
from selfconsume.humanml import evaluator as evaluator_lib
from selfconsume.humanml import evaluator_record
from selfconsume.metrics import retrieval
from tests.test_checkpoint_roundtrip import SaveKilled, SaveKiller

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
  """The smoke evaluator on 256 synthetic motions, trained once per test run.

  Its cache is in the run's base directory, which xdist's workers share (each has its own
  directory under it): the first worker to get here trains it under a file lock, the other
  waits for it and loads it (not a second training, ~35 s, on the other worker)."""
  train, _ = _make_dataset(256, seed=0)
  base = tmp_path_factory.getbasetemp()
  shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  cache = str(shared / "shared-evaluator-cache")
  with filelock.FileLock(cache + ".lock"):
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
  with pytest.raises(CheckpointError, match="missing: no checkpoint"):
    evaluator_lib.load_evaluator(f"{cache}/missing")


def test_config_is_resolved_and_checked():
  partial = {"num_steps": 7}
  resolved = evaluator_lib.resolve_config(partial)
  assert resolved.num_steps == 7 and resolved.width == evaluator_lib.default_config().width
  with pytest.raises(ConfigError, match="unknown evaluator field 'widht'"):
    evaluator_lib.resolve_config({"widht": 3})
  with pytest.raises(ConfigError, match="divisible"):
    evaluator_lib.resolve_config({"width": 30, "num_heads": 4})


# ----------------------------------------------------------------------------- saved evaluators


def _assert_same_evaluator(a: evaluator_lib.Evaluator, b: evaluator_lib.Evaluator) -> None:
  assert jax.tree.structure(a.params) == jax.tree.structure(b.params)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
  for x, y in ((a.mean, b.mean), (a.std, b.std)):
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
  assert (a.vocab, a.max_frames, a.fingerprint, a.info) == (b.vocab, b.max_frames,
                                                             b.fingerprint, b.info)
  assert a.config.to_dict() == b.config.to_dict()
  assert evaluator_record.fingerprint(a) == evaluator_record.fingerprint(b)


def _one_line(info: pytest.ExceptionInfo, *parts: str) -> None:
  message = str(info.value)
  assert "\n" not in message and len(message) < 400, message
  for part in parts:
    assert part in message, (part, message)


def test_saved_evaluator_round_trips_bit_for_bit(trained, tmp_path):
  train, evaluator, _ = trained
  path = str(tmp_path / "evaluator")
  evaluator_lib.save_evaluator(evaluator, path)
  assert evaluator_lib.is_saved(path)
  loaded = evaluator_lib.load_evaluator(path, train)
  _assert_same_evaluator(loaded, evaluator)
  _assert_same_evaluator(evaluator_lib.load_evaluator(path), evaluator)   # without the data
  np.testing.assert_array_equal(loaded.embed_texts(["a person walks slowly"]),
                                evaluator.embed_texts(["a person walks slowly"]))


def test_saved_evaluator_refusals_are_one_line(trained, tmp_path, monkeypatch,
                                              truncate_checkpoint):
  train, evaluator, _ = trained
  other, _ = _make_dataset(16, seed=5)
  path = str(tmp_path / "evaluator")
  evaluator_lib.save_evaluator(evaluator, path)
  with pytest.raises(CheckpointError) as info:
    evaluator_lib.load_evaluator(path, other)
  _one_line(info, path, f"data_fingerprint: checkpoint has {train.fingerprint()!r}, config has "
            f"{other.fingerprint()!r}")
  # One saved by a code of another cache version.
  with monkeypatch.context() as patch:
    patch.setattr(evaluator_lib, "CACHE_VERSION", evaluator_lib.CACHE_VERSION - 1)
    evaluator_lib.save_evaluator(evaluator, str(tmp_path / "older"))
  with pytest.raises(CheckpointError) as info:
    evaluator_lib.load_evaluator(str(tmp_path / "older"), train)
  _one_line(info, f"cache_version: checkpoint has {evaluator_lib.CACHE_VERSION - 1}, config "
            f"has {evaluator_lib.CACHE_VERSION}")
  # The msgpack + npz directory of cache version 1.
  legacy = tmp_path / "legacy"
  legacy.mkdir()
  for name in ("params.msgpack", "vocab.json", "meta.json", "normalization.npz"):
    (legacy / name).write_bytes(b"{}")
  with pytest.raises(CheckpointError) as info:
    evaluator_lib.load_evaluator(str(legacy), train)
  _one_line(info, str(legacy), "older version", "cache version 1")
  # Truncated arrays.
  assert truncate_checkpoint(path)
  with pytest.raises(CheckpointError) as info:
    evaluator_lib.load_evaluator(path, train)
  _one_line(info, path, "truncated or corrupt")


def test_cache_version_enters_the_key_so_old_caches_are_retrained(monkeypatch):
  config = evaluator_lib.smoke_config()
  key = evaluator_lib.cache_key("abc", config)
  monkeypatch.setattr(evaluator_lib, "CACHE_VERSION", evaluator_lib.CACHE_VERSION - 1)
  assert evaluator_lib.cache_key("abc", config) != key


def test_evaluator_save_killed_midway_leaves_nothing(trained, tmp_path, monkeypatch):
  _, evaluator, _ = trained
  path = str(tmp_path / "cache" / "evaluator-key")
  killer = SaveKiller(monkeypatch)
  killer.arm()
  with pytest.raises(SaveKilled):
    evaluator_lib.save_evaluator(evaluator, path)
  killer.disarm()
  # No directory that a later run would take for a cached evaluator: it is trained again.
  assert not os.path.exists(path) and not evaluator_lib.is_saved(path)
  evaluator_lib.save_evaluator(evaluator, path)
  _assert_same_evaluator(evaluator_lib.load_evaluator(path), evaluator)


def test_workdir_copy_is_loaded_or_refused(trained, tmp_path):
  train, evaluator, _ = trained
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  evaluator_lib.save_evaluator(evaluator, evaluator_record.copy_path(workdir))
  # An empty cache: the copy is loaded, not retrained.
  loaded = evaluator_record.load_or_train(workdir, train, evaluator_lib.smoke_config(),
                                          str(tmp_path / "empty-cache"))
  _assert_same_evaluator(loaded, evaluator)
  assert not os.path.exists(tmp_path / "empty-cache")
  smaller = evaluator_lib.smoke_config()
  smaller.num_steps = 10
  with pytest.raises(CheckpointError, match="another config.eval.evaluator"):
    evaluator_record.load_or_train(workdir, train, smaller, str(tmp_path / "empty-cache"))
  # A copy in the format of cache version 1 is named, not misread.
  legacy = tmp_path / "legacy-run"
  os.makedirs(evaluator_record.copy_path(str(legacy)))
  with open(os.path.join(evaluator_record.copy_path(str(legacy)), "params.msgpack"), "wb") as f:
    f.write(b"\x80")
  with pytest.raises(CheckpointError) as info:
    evaluator_record.load_or_train(str(legacy), train, evaluator_lib.smoke_config(),
                                   str(tmp_path / "empty-cache"))
  _one_line(info, "older version")
