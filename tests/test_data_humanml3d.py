"""The HumanML3D loader on small hand-made directories: segments, mirrored ids, subsets,
normalisation, and a clear DataError for each kind of malformed directory."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from selfconsume.data import humanml3d
from selfconsume.errors import DataError

DIM = 263


def _write_dataset(root, motions: dict, texts: dict, splits: dict, mean=None, std=None):
  for sub in ("new_joint_vecs", "texts"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  for motion_id, motion in motions.items():
    np.save(os.path.join(root, "new_joint_vecs", motion_id + ".npy"), motion)
  for motion_id, lines in texts.items():
    with open(os.path.join(root, "texts", motion_id + ".txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  for split, ids in splits.items():
    with open(os.path.join(root, split + ".txt"), "w") as f:
      f.write("\n".join(ids) + "\n")
  np.save(os.path.join(root, "Mean.npy"), np.zeros(DIM, np.float32) if mean is None else mean)
  np.save(os.path.join(root, "Std.npy"), np.full(DIM, 2.0, np.float32) if std is None else std)


@pytest.fixture()
def dataset_dir(tmp_path):
  rng = np.random.default_rng(0)
  motions = {
      "000001": rng.normal(size=(60, DIM)).astype(np.float32),
      "M000001": rng.normal(size=(60, DIM)).astype(np.float32),
      "000002": rng.normal(size=(120, DIM)).astype(np.float32),
      "000003": rng.normal(size=(30, DIM)).astype(np.float32),       # too short: dropped
      "000004": rng.normal(size=(250, DIM)).astype(np.float32),      # cut to 196
      "000005": rng.normal(size=(80, DIM)).astype(np.float32),
  }
  texts = {
      "000001": ["a person walks forward#a/DET person/NOUN walks/VERB#0.0#0.0",
                 "someone walks ahead#someone/NOUN#0.0#0.0"],
      "M000001": ["a person walks forward#a/DET#0.0#0.0"],
      # One whole-motion caption and two captions of the sub-clip 1 s .. 4 s.
      "000002": ["a person jumps then sits#x/OTHER#0.0#0.0",
                 "a person sits down#x/OTHER#1.0#4.0", "someone sits#x/OTHER#1.0#4.0",
                 "too short a segment#x/OTHER#5.0#5.5"],
      "000003": ["short#x/OTHER#0.0#0.0"],
      "000004": ["long#x/OTHER#nan#nan"],
      "000005": ["only a segment#x/OTHER#0.5#3.0"],   # no whole caption: only the clip
  }
  splits = {"train": list(motions), "val": ["000001"], "test": ["000002"]}
  root = str(tmp_path / "hml")
  _write_dataset(root, motions, texts, splits)
  return root, motions


def test_load_entries_segments_and_mirrors(dataset_dir):
  root, motions = dataset_dir
  data = humanml3d.load(root, "train")
  assert data.ids == ["000001", "M000001", "000002", "000002@1-4", "000004", "000005@0.5-3"]
  assert data.motions.shape == (6, 196, DIM) and data.motions.dtype == np.float32
  np.testing.assert_array_equal(data.lengths, [60, 60, 120, 60, 196, 50])
  assert data.captions[0] == ["a person walks forward", "someone walks ahead"]
  assert data.captions[3] == ["a person sits down", "someone sits"]
  # Normalised with Mean 0 / Std 2, zero padded; the sub-clip is frames 20..80.
  np.testing.assert_allclose(data.motions[2, :120], motions["000002"] / 2, rtol=1e-6)
  np.testing.assert_allclose(data.motions[3, :60], motions["000002"][20:80] / 2, rtol=1e-6)
  assert not data.motions[0, 60:].any()
  assert data.mask.sum() == data.lengths.sum()
  np.testing.assert_allclose(data.raw_motions()[4, :196], motions["000004"][:196], rtol=1e-6)
  np.testing.assert_allclose(data.denormalize(data.normalize(motions["000001"])),
                             motions["000001"], rtol=1e-6)


def test_subsets_and_fingerprint(dataset_dir, tmp_path):
  root, _ = dataset_dir
  full = humanml3d.load(root, "train")
  a = humanml3d.load(root, "train", num_motions=3, seed=1)
  b = humanml3d.load(root, "train", num_motions=3, seed=1)
  assert len(a) == 3 and a.ids == b.ids and a.fingerprint() == b.fingerprint()
  assert set(a.ids) <= set(full.ids) and a.fingerprint() != full.fingerprint()
  id_file = tmp_path / "ids.txt"
  id_file.write_text("000002\nM000001\n")
  sub = humanml3d.load(root, "train", subset_ids=str(id_file))
  assert sub.ids == ["000002", "000002@1-4", "M000001"]
  assert humanml3d.load(root, "train", subset_ids=["000001"]).ids == ["000001"]
  short = humanml3d.load(root, "train", max_frames=100)
  assert short.motions.shape[1] == 100 and short.lengths.max() == 100
  with pytest.raises(DataError, match="asked for 50"):
    humanml3d.load(root, "train", num_motions=50)
  with pytest.raises(DataError, match="not in this split"):
    humanml3d.load(root, "val", subset_ids=["000002"])


def _break(root, what):
  if what == "wrong_width":
    np.save(os.path.join(root, "new_joint_vecs", "000002.npy"), np.zeros((50, 251), np.float32))
    return "000002.npy", "shape"
  if what == "nan":
    bad = np.zeros((50, DIM), np.float32)
    bad[3, 7] = np.nan
    np.save(os.path.join(root, "new_joint_vecs", "000002.npy"), bad)
    return "000002.npy", "NaN"
  if what == "missing_caption":
    os.remove(os.path.join(root, "texts", "000002.txt"))
    return "000002.txt", "missing"
  if what == "empty_caption":
    open(os.path.join(root, "texts", "000002.txt"), "w").write("\n\n")
    return "000002.txt", "empty"
  if what == "bad_time":
    open(os.path.join(root, "texts", "000002.txt"), "w").write("x#y#zero#1\n")
    return "000002.txt", "not a number"
  if what == "missing_motion":
    os.remove(os.path.join(root, "new_joint_vecs", "000002.npy"))
    return "000002.npy", "missing"
  if what == "empty_split":
    open(os.path.join(root, "test.txt"), "w").write("\n")
    return "test.txt", "no motion ids"
  if what == "missing_split":
    os.remove(os.path.join(root, "test.txt"))
    return "test.txt", "missing"
  if what == "split_without_usable_motion":
    open(os.path.join(root, "test.txt"), "w").write("000003\n")
    return "test.txt", "no motion of"
  if what == "bad_std":
    np.save(os.path.join(root, "Std.npy"), np.zeros(DIM, np.float32))
    return "Std.npy", "> 0"
  if what == "missing_mean":
    os.remove(os.path.join(root, "Mean.npy"))
    return "Mean.npy", "missing"
  if what == "mean_shape":
    np.save(os.path.join(root, "Mean.npy"), np.zeros(DIM - 1, np.float32))
    return "Mean.npy", "shape"
  if what == "no_root":
    shutil.rmtree(root)
    return os.path.basename(root), "does not exist"
  raise AssertionError(what)


@pytest.mark.parametrize("what", [
    "wrong_width", "nan", "missing_caption", "empty_caption", "bad_time", "missing_motion",
    "empty_split", "missing_split", "split_without_usable_motion", "bad_std", "missing_mean",
    "mean_shape", "no_root"])
def test_malformed_directories_raise_clear_errors(dataset_dir, what):
  root, _ = dataset_dir
  filename, expected = _break(root, what)
  with pytest.raises(DataError) as info:
    humanml3d.load(root, "test")
  message = str(info.value)
  assert filename in message and expected in message, message


def test_unknown_split(dataset_dir):
  with pytest.raises(DataError, match="unknown split"):
    humanml3d.load(dataset_dir[0], "training")
