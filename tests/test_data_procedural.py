"""The built-in procedural corpus: layout, determinism, an atomic build that refuses foreign
directories, Mean/Std as HumanML3D's cal_mean_variance, a spread within 1.5x of real
HumanML3D's per block, physical plausibility of every family checked independently on the
joints, caption variety, and round trips through the features."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from selfconsume import outputs
from selfconsume.data import humanml3d
from selfconsume.data import procedural
from selfconsume.data import procedural_actions as actions
from selfconsume.data import procedural_floor as floor
from selfconsume.data import procedural_kinematics as kinematics
from selfconsume.errors import DataError
from selfconsume.motion import features
from selfconsume.motion import skeleton
from selfconsume.physics import humanoid

SIZE = 200    # large enough for a stable per-block std, small enough to build in seconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("corpus") / "corpus")
  procedural.write_corpus(root, SIZE, seed=0)
  return root


def _ids(root):
  return sorted(f[:-4] for f in os.listdir(os.path.join(root, "new_joints")))


def _single(family: str, rng: np.random.Generator):
  """Global joints of one action of `family` (any placement), its action."""
  while True:
    performer = actions.sample_performer(rng)
    action = actions.sample_action(rng, family, performer)
    if procedural.MIN_JOINT_FRAMES <= action.num_frames <= procedural.MAX_JOINT_FRAMES:
      break
  controls, _ = actions.BUILDERS[family](rng, action.params, action.num_frames)
  joints = kinematics.controls_to_joints(
      procedural._merge([controls]), rng.uniform(-2, 2, 2).astype(np.float32),
      float(rng.uniform(-np.pi, np.pi)), stance=performer["stance"])
  return joints, action


@pytest.fixture(scope="module")
def by_family():
  """Four single actions of every family (no features: cheap)."""
  rng = np.random.default_rng(11)
  return {f: [_single(f, rng) for _ in range(4)] for f in procedural.FAMILIES}


# ----------------------------------------------------------------------------- layout
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
  # Floor actions are planned in the start frame: they only ever open a motion.
  assert all(f[1] not in floor.FAMILIES for f in families.values() if len(f) == 2)
  assert procedural.motion_families(os.path.dirname(corpus)) is None
  assert not glob.glob(os.path.join(os.path.dirname(corpus), ".tmp-corpus-*"))


def test_deterministic_by_seed():
  a = procedural.sample_motion(np.random.default_rng(5))
  b = procedural.sample_motion(np.random.default_rng(5))
  c = procedural.sample_motion(np.random.default_rng(6))
  np.testing.assert_array_equal(a[0], b[0])
  assert a[1] == b[1]
  assert a[1] != c[1] or a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


# ----------------------------------------------------------------------------- build
def test_ensure_corpus_reuses_and_rebuilds(tmp_path):
  other = str(tmp_path / "small")
  procedural.ensure_corpus(other, 20, 0)
  manifest = os.path.join(other, procedural.MANIFEST)
  before = os.path.getmtime(manifest)
  assert procedural.ensure_corpus(other, 20, 0) == other
  assert os.path.getmtime(manifest) == before
  procedural.ensure_corpus(other, 24, 1)
  assert outputs.read_json(manifest)["seed"] == 1
  assert len(_ids(other)) == 24
  assert sorted(os.listdir(tmp_path)) == ["small"]       # no temporary leftovers


def _snapshot(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      out[os.path.relpath(path, root)] = open(path, "rb").read()
  return out


def test_refuses_a_foreign_directory_and_leaves_it_as_it_was(tmp_path):
  foreign = tmp_path / "real_data"
  foreign.mkdir()
  (foreign / "train.txt").write_text("000001\n")
  (foreign / "texts").mkdir()
  (foreign / "texts" / "000001.txt").write_text("a person walks#x#0#0\n")
  before = _snapshot(foreign)
  for build in (lambda: procedural.ensure_corpus(str(foreign), 20, 0),
                lambda: procedural.write_corpus(str(foreign), 20, 0)):
    with pytest.raises(DataError, match="not a procedural corpus") as info:
      build()
    assert str(foreign) in str(info.value) and "\n" not in str(info.value)
  assert _snapshot(foreign) == before
  assert sorted(os.listdir(tmp_path)) == ["real_data"]
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  with pytest.raises(DataError, match="is not a directory"):
    procedural.ensure_corpus(str(a_file), 20, 0)
  assert a_file.read_text() == "x"


def test_a_build_interrupted_midway_is_built_again(tmp_path, monkeypatch):
  root = str(tmp_path / "corpus")
  real = procedural._write_files

  def crash(out_dir, size, seed):
    os.makedirs(os.path.join(out_dir, "new_joint_vecs"))
    open(os.path.join(out_dir, "new_joint_vecs", "000000.npy"), "wb").close()
    raise KeyboardInterrupt   # e.g. Ctrl-C in the middle of writing the files

  monkeypatch.setattr(procedural, "_write_files", crash)
  with pytest.raises(KeyboardInterrupt):
    procedural.ensure_corpus(root, 20, 0)
  assert not os.path.exists(root)                         # nothing that looks like a corpus
  # A crash that kills the process leaves its temporary directory behind; the next build
  # removes it.
  dead = 2 ** 31 - 2                                      # no such process
  os.makedirs(str(tmp_path / f".tmp-corpus-corpus-{dead}-x1y2" / "new_joints"))
  alive = tmp_path / f".tmp-corpus-corpus-{os.getpid()}-z3"  # a build still running: kept
  alive.mkdir()
  monkeypatch.setattr(procedural, "_write_files", real)
  procedural.ensure_corpus(root, 20, 0)
  assert outputs.read_json(os.path.join(root, procedural.MANIFEST))["size"] == 20
  assert sorted(os.listdir(tmp_path)) == sorted(["corpus", alive.name])


def test_the_builder_prints_the_std_table(tmp_path, capsys):
  procedural.main(["--out", str(tmp_path / "c"), "--size", "20", "--seed", "2"])
  out = capsys.readouterr().out
  for name, _ in procedural.FEATURE_GROUPS:
    assert name in out
  assert "HumanML3D" in out and '"seconds"' in out


# ----------------------------------------------------------------------------- statistics
def test_mean_std_are_cal_mean_variance(corpus):
  """Mean/Std over every motion of new_joint_vecs: the per-dimension mean, and per feature
  group the mean of the per-dimension stds, foot contacts not divided by 5."""
  files = sorted(glob.glob(os.path.join(corpus, "new_joint_vecs", "*.npy")))
  data = np.concatenate([np.load(f) for f in files]).astype(np.float64)
  std = data.std(0)
  groups = [(0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263)]
  expected = np.concatenate([np.full(b - a, std[a:b].mean()) for a, b in groups])
  np.testing.assert_allclose(np.load(os.path.join(corpus, "Mean.npy")), data.mean(0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.load(os.path.join(corpus, "Std.npy")), expected, rtol=1e-5)
  contacts = data[:, 259:263]
  assert abs(np.load(os.path.join(corpus, "Std.npy"))[259] - contacts.std(0).mean()) < 1e-5
  assert contacts.std(0).mean() > 0.2         # so a /5 would show


def test_per_block_std_is_within_1_5x_of_real_humanml3d(corpus):
  std = np.load(os.path.join(corpus, "Std.npy"))
  print("\n" + procedural.std_table(std))
  for name, value in procedural.group_std(std).items():
    real = procedural.HUMANML3D_GROUP_STD[name]
    assert real / 1.5 <= value <= real * 1.5, (name, value, real)


def test_corpus_features_are_the_official_ones(corpus):
  """Written features are joints_to_features of the written joints (the official pipeline,
  heading sign artefact included), which are what the features give back."""
  ids = _ids(corpus)[:4]
  vecs = [np.load(os.path.join(corpus, "new_joint_vecs", i + ".npy")) for i in ids]
  joints = [np.load(os.path.join(corpus, "new_joints", i + ".npy")) for i in ids]
  for recovered, expected in zip(features.features_to_joints_list(vecs), joints):
    np.testing.assert_allclose(recovered, expected, atol=1e-5)


# ----------------------------------------------------------------------------- plausibility
def test_every_family_is_physically_plausible(by_family):
  """Nothing below the floor, constant bones (the fixed skeleton HumanML3D retargets to),
  only the humanoid's contact joints touch the floor, and grounded feet, knees and hands
  do not slide."""
  for family, motions in by_family.items():
    grounded, planted = {}, {}
    for joints, action in motions:
      assert np.isfinite(joints).all(), family
      check = procedural.plausibility(joints)
      assert check["lowest"] > -1e-4, (family, check["lowest"])
      assert check["bone_spread"] < 1e-3, family
      np.testing.assert_allclose(np.linalg.norm(joints[0, 1:] - joints[0, list(
          skeleton.PARENTS[1:])], axis=-1), skeleton.BONE_LENGTHS[1:], atol=1e-3)
      assert check["lowest_unsupported"] > 0.01, (family, check["lowest_unsupported"])
      for group in check["grounded"]:
        grounded[group] = grounded.get(group, 0) + check["grounded"][group]
        planted[group] = planted.get(group, 0) + check["planted"][group]
    for group, count in grounded.items():
      if count:
        assert planted[group] / count > 0.97, (family, group, planted[group], count)


_MASS = np.zeros(22)
for _j, (_, _m) in humanoid._SEGMENTS.items():   # segment masses shared by the bone's ends
  _child = 12 if _j == 9 else humanoid.BONE_CHILD.get(_j)
  _ends = [0, 1, 2] if _j == 0 else [_j, _child]
  _MASS[_ends] += _m / len(_ends)
_MASS[15] += humanoid._HEAD[1]
_MASS[[20, 21]] += humanoid._HAND[1]


def _support_gap(frame: np.ndarray) -> float:
  """Horizontal distance (m) of the centre of mass from the support polygon: the convex hull
  of the contact joints on the floor and of the heels of flat feet (0 inside)."""
  points = [frame[j, [0, 2]] for j in procedural.SUPPORT_JOINTS if frame[j, 1] < 0.015]
  for ankle, toe in ((7, 10), (8, 11)):
    if frame[toe, 1] < 0.015 and frame[ankle, 1] < 0.075:
      along = frame[toe, [0, 2]] - frame[ankle, [0, 2]]
      points.append(frame[ankle, [0, 2]] - 0.03 * along / np.linalg.norm(along))
  com = (_MASS[:, None] * frame).sum(0)[[0, 2]] / _MASS.sum()
  points = np.array(points)
  hull = points[ConvexHull(points).vertices]
  edges = np.roll(hull, -1, 0) - hull
  cross = edges[:, 0] * (com - hull)[:, 1] - edges[:, 1] * (com - hull)[:, 0]
  if (cross >= 0).all() or (cross <= 0).all():
    return 0.0
  t = np.clip(np.sum((com - hull) * edges, 1) / np.sum(edges * edges, 1), 0, 1)
  return float(np.min(np.linalg.norm(hull + t[:, None] * edges - com, axis=1)))


@pytest.mark.parametrize("family, rests_on", [("kneel", ("knees",)),
                                              ("crawl", ("knees", "hands")),
                                              ("lie_down", ("knees", "hands"))])
def test_floor_families_rest_on_the_floor(family, rests_on):
  """Kneeling, crawling and lying are supported poses, not falls: the knees (and hands) are
  put down and stay, lying puts the pelvis on the floor, and whenever the body rests on
  three or more contact points its centre of mass is within 7 cm of their support polygon
  (the mass of the humanoid the corrector simulates)."""
  rng = np.random.default_rng(3)
  gaps = []
  for _ in range(5):
    joints, action = _single(family, rng)
    check = procedural.plausibility(joints)
    for group in rests_on:
      assert check["grounded"][group] > 10, (family, group)
    if family == "lie_down":
      assert check["grounded"]["pelvis"] > 0
    for frame in joints.astype(np.float64):
      down = sum(frame[j, 1] < 0.015 for j in procedural.SUPPORT_JOINTS)
      if down >= 3 and frame[0, 1] < 0.6:
        gaps.append(_support_gap(frame))
  assert len(gaps) > 100
  assert np.quantile(gaps, 0.95) < 0.07, np.quantile(gaps, 0.95)


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


# ----------------------------------------------------------------------------- captions
@pytest.fixture(scope="module")
def sampled():
  rng = np.random.default_rng(11)
  return [procedural.sample_motion(rng) for _ in range(300)]


def test_captions_vary_with_action_and_parameters(sampled):
  families = {f for _, _, fams in sampled for f in fams}
  assert len(procedural.FAMILIES) >= 22 and families == set(procedural.FAMILIES)
  captions = [c for _, caps, _ in sampled for c in caps]
  assert all(len(caps) >= 3 for _, caps, _ in sampled)
  assert len(set(captions)) > 0.4 * len(captions)
  assert any(len(fams) == 2 for _, _, fams in sampled)
  # The same family with different sides reads differently.
  turns = {c for _, caps, fams in sampled if fams == ["turn"] for c in caps}
  assert any("left" in c for c in turns) and any("right" in c for c in turns)
  # Captions stay in the corpus's style: a subject, lower case, no punctuation but commas.
  for c in captions:
    assert c == c.lower() and c.replace(",", "").replace(" ", "").isalnum(), c
    assert c.split()[0] in ("a", "the", "someone"), c


def test_round_trips_on_procedural_motions(sampled):
  """joints -> features -> joints -> features, exact with the heading-sign fix (the official
  sign flip near +-180 degrees is a one-row artefact, tested in test_motion_features)."""
  joints = [j for j, _, _ in sampled[:6]]
  feats = features.joints_to_features_list(joints, heading_sign_fix=True)
  target = features.recoverable_frame_list(joints)
  back = features.features_to_joints_list(feats, with_last_frame=True)
  for k, b in enumerate(back):
    assert b.shape == joints[k].shape
    assert np.abs(b - target[k]).max() < 1e-4
  again = features.joints_to_features_list(back, heading_sign_fix=True)
  for f, g in zip(feats, again):
    assert np.abs(f - g).max() < 1e-4
