"""The built-in procedural corpus: layout, determinism, physical plausibility checked
independently on new_joints, caption variety, and round trips through the features."""

from __future__ import annotations

import os

import numpy as np
import pytest

from selfconsume import outputs
from selfconsume.data import humanml3d
from selfconsume.data import procedural
from selfconsume.data import procedural_actions as actions
from selfconsume.data import procedural_kinematics as kinematics
from selfconsume.errors import DataError
from selfconsume.motion import features
from selfconsume.motion import skeleton

SIZE = 48


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("corpus"))
  procedural.write_corpus(root, SIZE, seed=3)
  return root


@pytest.fixture(scope="module")
def sampled():
  """Global joints of many motions (no features: cheap) for the plausibility checks."""
  rng = np.random.default_rng(11)
  return [procedural.sample_motion(rng) for _ in range(300)]


def _ids(root):
  return sorted(f[:-4] for f in os.listdir(os.path.join(root, "new_joints")))


def test_layout_and_load(corpus):
  for name in ("Mean.npy", "Std.npy", "train.txt", "val.txt", "test.txt", "manifest.json"):
    assert os.path.isfile(os.path.join(corpus, name)), name
  ids = _ids(corpus)
  assert len(ids) == SIZE
  total = 0
  for split in humanml3d.SPLITS:
    data = humanml3d.load(corpus, split)
    total += len(data)
    assert data.motions.shape[1:] == (skeleton.MAX_FRAMES, features.FEATURE_DIM)
    assert data.lengths.min() >= skeleton.MIN_FRAMES
    assert data.lengths.max() <= skeleton.MAX_FRAMES
  assert total == SIZE
  vec = np.load(os.path.join(corpus, "new_joint_vecs", ids[0] + ".npy"))
  joints = np.load(os.path.join(corpus, "new_joints", ids[0] + ".npy"))
  assert vec.dtype == np.float32 and joints.shape == (len(vec), 22, 3)
  line = open(os.path.join(corpus, "texts", ids[0] + ".txt")).readline().strip()
  caption, tokens, start, end = line.split("#")
  assert caption and "/" in tokens and float(start) == 0.0 and float(end) == 0.0
  families = procedural.motion_families(corpus)
  assert sorted(families) == ids
  assert all(1 <= len(f) <= 2 and set(f) <= set(procedural.FAMILIES) for f in families.values())
  assert procedural.motion_families(os.path.dirname(corpus)) is None


def test_deterministic_by_seed():
  a = procedural.sample_motion(np.random.default_rng(5))
  b = procedural.sample_motion(np.random.default_rng(5))
  c = procedural.sample_motion(np.random.default_rng(6))
  np.testing.assert_array_equal(a[0], b[0])
  assert a[1] == b[1]
  assert a[1] != c[1] or a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_ensure_corpus_reuses_and_rebuilds(corpus, tmp_path):
  manifest = os.path.join(corpus, procedural.MANIFEST)
  before = os.path.getmtime(manifest)
  assert procedural.ensure_corpus(corpus, SIZE, 3) == corpus
  assert os.path.getmtime(manifest) == before
  other = str(tmp_path / "small")
  procedural.ensure_corpus(other, 20, 0)
  assert outputs.read_json(os.path.join(other, procedural.MANIFEST))["size"] == 20
  procedural.ensure_corpus(other, 24, 1)
  assert outputs.read_json(os.path.join(other, procedural.MANIFEST))["seed"] == 1
  assert len(_ids(other)) == 24
  foreign = tmp_path / "real_data"
  foreign.mkdir()
  (foreign / "train.txt").write_text("000001\n")
  with pytest.raises(DataError, match="refusing"):
    procedural.ensure_corpus(str(foreign), 20, 0)


def _bone_lengths(joints):
  return np.linalg.norm(joints[:, 1:] - joints[:, list(skeleton.PARENTS[1:])], axis=-1)


def _check_plausible(joints):
  """(no penetration, bone-length spread, share of grounded foot frames that slide < 2.5 mm)."""
  lowest = float(joints[..., 1].min())
  spread = float(np.ptp(_bone_lengths(joints), axis=0).max())
  feet = joints[:, list(skeleton.FOOT_JOINTS)]
  ground = feet[..., 1].min() + 0.01  # within 1 cm of the lowest point = on the ground
  grounded = (feet[1:, :, 1] < ground) & (feet[:-1, :, 1] < ground)
  slide = np.linalg.norm(feet[1:, :, [0, 2]] - feet[:-1, :, [0, 2]], axis=-1)
  return lowest, spread, grounded.sum(), (slide[grounded] < 0.0025).sum()


def test_new_joints_are_physically_plausible(corpus):
  grounded = still = 0
  for motion_id in _ids(corpus):
    joints = np.load(os.path.join(corpus, "new_joints", motion_id + ".npy"))
    lowest, spread, g, s = _check_plausible(joints)
    assert lowest > -0.005, motion_id
    assert spread < 1e-3, motion_id
    grounded += g
    still += s
  assert grounded > 0 and still / grounded > 0.97


def test_sampled_motions_are_physically_plausible(sampled):
  grounded = still = 0
  for joints, _, families in sampled:
    assert np.isfinite(joints).all()
    lowest, spread, g, s = _check_plausible(joints)
    assert lowest > np.min(joints[..., 1]) - 1e-6
    assert joints[..., 1].min() > -0.005, families
    assert spread < 1e-3, families
    np.testing.assert_allclose(_bone_lengths(joints)[0], skeleton.BONE_LENGTHS[1:], atol=1e-3)
    grounded += g
    still += s
  assert still / grounded > 0.97


def test_captions_vary_with_action_and_parameters(sampled):
  families = {f for _, _, fams in sampled for f in fams}
  assert len(procedural.FAMILIES) >= 12 and families == set(procedural.FAMILIES)
  captions = [c for _, caps, _ in sampled for c in caps]
  assert all(len(caps) >= 3 for _, caps, _ in sampled)
  assert len(set(captions)) > 0.4 * len(captions)
  assert any(len(fams) == 2 for _, _, fams in sampled)
  # The same family with different sides reads differently.
  waves = {c for _, caps, fams in sampled if fams == ["wave"] for c in caps}
  assert any("left" in c for c in waves) and any("right" in c for c in waves)


def test_round_trips_on_procedural_motions(sampled):
  joints = [j for j, _, _ in sampled[:6]]
  feats = features.joints_to_features_list(joints)
  target = features.recoverable_frame_list(joints)
  back = features.features_to_joints_list(feats, with_last_frame=True)
  for k, b in enumerate(back):
    assert b.shape == joints[k].shape
    assert np.abs(b - target[k]).max() < 1e-4
  again = features.joints_to_features_list(back)
  for f, g in zip(feats, again):
    assert np.abs(f - g).max() < 1e-4


def test_written_features_match_written_joints(corpus):
  ids = _ids(corpus)[:3]
  vecs = [np.load(os.path.join(corpus, "new_joint_vecs", i + ".npy")) for i in ids]
  joints = [np.load(os.path.join(corpus, "new_joints", i + ".npy")) for i in ids]
  for recovered, expected in zip(features.features_to_joints_list(vecs), joints):
    np.testing.assert_allclose(recovered, expected, atol=1e-5)


@pytest.mark.parametrize("family", ["jump", "jump_forward", "hop"])
def test_jumps_push_off_fly_and_land_like_a_body(family):
  """The pelvis's vertical acceleration stays within what legs can push (no step in speed at
  take-off or touch-down), and is gravity's while both feet are off the ground."""
  rng = np.random.default_rng(5)
  gravity = 9.81
  airborne = 0
  for _ in range(20):
    action = actions.sample_action(rng, family)
    controls, _ = actions.BUILDERS[family](rng, action.params, action.num_frames)
    joints = kinematics.controls_to_joints(controls, np.zeros(2, np.float32), 0.0)
    accel = np.diff(joints[:, 0, 1], 2) * skeleton.FPS ** 2      # frame t + 1
    assert np.abs(accel).max() < 1.6 * gravity, action
    feet = joints[:, [7, 8, 10, 11], 1].min(-1)
    off = feet > feet.min() + 0.02
    flying = off[:-2] & off[1:-1] & off[2:]                        # t, t + 1, t + 2 airborne
    np.testing.assert_allclose(accel[flying], -gravity, atol=0.05 * gravity)
    airborne += flying.sum()
  assert airborne > 20
