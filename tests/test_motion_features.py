"""HumanML3D features: agreement with an independent float64 numpy transcription of
HumanML3D's process_file (frame 0's identity heading and the sign flip near +-180 degrees
included), and the joints <-> features round trips."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from selfconsume.motion import features
from selfconsume.motion import rotations
from selfconsume.motion import skeleton


# ---------------------------------------------------------------- numpy reference (float64)
def _np_qmul(a, b):
  aw, ax, ay, az = np.moveaxis(a, -1, 0)
  bw, bx, by, bz = np.moveaxis(b, -1, 0)
  return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                   aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
                  -1)


def _np_qinv(q):
  return q * np.array([1, -1, -1, -1.0])


def _np_qrot(q, v):
  q, v = np.broadcast_arrays(q, np.concatenate([np.zeros_like(v[..., :1]), v], -1))
  return _np_qmul(_np_qmul(q, v), _np_qinv(q))[..., 1:]


def _np_qbetween(v0, v1):
  v = np.cross(v0, v1)
  w = np.sqrt((v0 ** 2).sum(-1, keepdims=True) * (v1 ** 2).sum(-1, keepdims=True))
  q = np.concatenate([w + (v0 * v1).sum(-1, keepdims=True), v], -1)
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _np_quat_to_matrix(q):
  w, x, y, z = np.moveaxis(q, -1, 0)
  return np.stack([
      np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
      np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
      np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def _unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def reference_features(joints: np.ndarray, sign_fix: bool = False) -> np.ndarray:
  """HumanML3D's process_file (no retargeting), written from its published definitions:
  inverse_kinematics_np sets the first frame's root quaternion to the identity, and the
  angular velocity is arcsin of the y component of r_rot[t+1] r_rot[t]^-1 as it comes
  (`sign_fix` takes the w >= 0 representative instead)."""
  p = joints.astype(np.float64).copy()
  p[..., 1] -= p.min(axis=(0, 1))[1]
  p = p - p[0, 0] * np.array([1, 0, 1.0])
  across = (p[0, 2] - p[0, 1]) + (p[0, 17] - p[0, 16])
  fwd = _unit(np.cross([0, 1, 0.0], _unit(across)))
  p = _np_qrot(_np_qbetween(fwd, np.array([0, 0, 1.0])), p)
  glob = p.copy()
  feet = []
  for ids in ((7, 10), (8, 11)):
    feet.append((((p[1:, ids] - p[:-1, ids]) ** 2).sum(-1) < 0.002).astype(np.float64))
  # inverse kinematics, smoothed forward
  across = (p[:, 1] - p[:, 2]) + (p[:, 17] - p[:, 16])
  fwd = np.cross(np.array([[0, 1, 0.0]]), _unit(across))
  fwd = _unit(gaussian_filter1d(fwd, 20, axis=0, mode="nearest"))
  r_rot = _np_qbetween(fwd, np.tile([0, 0, 1.0], (len(fwd), 1)))
  r_rot[0] = [1.0, 0.0, 0.0, 0.0]          # the official root_quat[0] = identity
  quats = np.zeros(p.shape[:-1] + (4,))
  quats[:, 0] = r_rot
  for chain in skeleton.KINEMATIC_CHAINS:
    rot = r_rot
    for a, b in zip(chain[:-1], chain[1:]):
      u = np.tile(skeleton.RAW_OFFSETS[b].astype(np.float64), (len(p), 1))
      arc = _np_qbetween(u, _unit(p[:, b] - p[:, a]))
      local = _np_qmul(_np_qinv(rot), arc)
      quats[:, b] = local
      rot = _np_qmul(rot, local)
  mats = _np_quat_to_matrix(quats)
  cont6d = np.concatenate([mats[..., 0], mats[..., 1]], -1)
  vel = _np_qrot(r_rot[1:], p[1:, 0] - p[:-1, 0])
  r_vel = _np_qmul(r_rot[1:], _np_qinv(r_rot[:-1]))
  if sign_fix:
    r_vel = np.where(r_vel[:, :1] < 0, -r_vel, r_vel)
  r_vel = np.arcsin(r_vel[:, 2:3])
  ric = p.copy()
  ric[..., 0] -= p[:, 0:1, 0]
  ric[..., 2] -= p[:, 0:1, 2]
  ric = _np_qrot(r_rot[:, None], ric)
  local_vel = _np_qrot(r_rot[:-1, None], glob[1:] - glob[:-1])
  n = len(p) - 1
  return np.concatenate([r_vel, vel[:, [0, 2]], ric[:-1, 0, 1:2], ric[:-1, 1:].reshape(n, -1),
                         cont6d[:-1, 1:].reshape(n, -1), local_vel.reshape(n, -1),
                         feet[0], feet[1]], -1)


BLOCKS = {"root_rot_vel": features.ROOT_ROT_VEL, "root_lin_vel": features.ROOT_LIN_VEL,
          "root_y": features.ROOT_Y, "ric": features.RIC, "rot6d": features.ROT6D,
          "local_vel": features.LOCAL_VEL, "foot_contact": features.FOOT_CONTACT}


def _spin(num_frames: int = 150, rate: float = 0.063) -> np.ndarray:
  """The rest pose spinning about Y (1.5 turns at the default rate) while drifting."""
  rest = skeleton.rest_pose()
  frames = []
  for t in range(num_frames):
    yaw = rate * t
    c, s = np.cos(yaw), np.sin(yaw)
    frames.append(rest @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T + [0.02 * t, 1.0, 0])
  return np.asarray(frames, np.float32)


# ---------------------------------------------------------------- fixtures
def _wandering_motion(num_frames: int, seed: int) -> np.ndarray:
  """Rest pose walking along a curve with noisy joints (bone lengths need not be constant)."""
  rng = np.random.default_rng(seed)
  rest = skeleton.rest_pose().astype(np.float64)
  yaw = 2.5 + np.cumsum(rng.normal(0, 0.04, num_frames))
  frames = []
  for t in range(num_frames):
    c, s = np.cos(yaw[t]), np.sin(yaw[t])
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    pose = rest + rng.normal(0, 0.02, rest.shape)
    frames.append(pose @ rot.T + [0.03 * t, 1.0 + 0.02 * np.sin(t / 4), -0.02 * t])
  return np.asarray(frames, np.float32)


@pytest.fixture(scope="module")
def motions():
  return [_wandering_motion(50, seed=1), _wandering_motion(44, seed=2)]


@pytest.fixture(scope="module")
def motion_features(motions):
  return features.joints_to_features_list(motions)


# ---------------------------------------------------------------- tests
def test_layout_constants():
  assert features.FEATURE_DIM == 263
  assert (features.RIC.start, features.ROT6D.start, features.LOCAL_VEL.start,
          features.FOOT_CONTACT.start) == (4, 67, 193, 259)


def test_every_block_matches_the_official_definition(motions, motion_features):
  for joints, feats in zip(motions, motion_features):
    expected = reference_features(joints)
    assert feats.shape == expected.shape == (len(joints) - 1, 263)
    for name, block in BLOCKS.items():
      np.testing.assert_allclose(feats[:, block], expected[:, block], atol=2e-4, err_msg=name)


def test_frame_zero_uses_the_identity_heading():
  """Row 0 is in the canonical frame (no smoothed heading), and its angular velocity is the
  half angle of frame 1's smoothed heading. The motion turns from its first frame, so the
  smoothed heading of frame 0 is far from the canonical facing: a real check."""
  joints = _spin(60, 0.03)
  feats = features.joints_to_features_list([joints])[0]
  np.testing.assert_allclose(feats, reference_features(joints), atol=2e-4)
  canonical = np.asarray(jax.jit(features.canonicalize)(joints))
  heading = np.asarray(jax.jit(features.heading_rotations)(canonical))
  assert abs(heading[0, 2]) > 0.1          # the smoothed heading of frame 0 is not +Z
  ric0 = (canonical[0, 1:] - canonical[0, 0] * [1, 0, 1]).reshape(-1)
  np.testing.assert_allclose(feats[0, features.RIC], ric0, atol=1e-5)
  np.testing.assert_allclose(feats[0, features.LOCAL_VEL],
                             (canonical[1] - canonical[0]).reshape(-1), atol=1e-5)
  np.testing.assert_allclose(feats[0, 0], np.arcsin(heading[1, 2]), atol=1e-6)
  # Row 1 onwards uses the smoothed heading.
  ric1 = np.asarray(rotations.qrot(jnp.asarray(heading[1]), jnp.asarray(
      canonical[1, 1:] - canonical[1, 0] * [1, 0, 1]))).reshape(-1)
  np.testing.assert_allclose(feats[1, features.RIC], ric1, atol=1e-5)


def test_round_trip_joints_features_joints(motions, motion_features):
  recovered = features.features_to_joints_list(motion_features, with_last_frame=True)
  targets = features.recoverable_frame_list(motions)
  short = features.features_to_joints_list(motion_features)
  for joints, back, target, first in zip(motions, recovered, targets, short):
    assert back.shape == joints.shape
    assert np.abs(back - target).max() < 1e-4
    np.testing.assert_allclose(first, back[:-1], atol=1e-6)


def test_round_trip_features_joints_features(motion_features):
  joints = features.features_to_joints_list(motion_features, with_last_frame=True)
  for again, feats in zip(features.joints_to_features_list(joints), motion_features):
    assert np.abs(again - feats).max() < 1e-4


def test_recovered_frame_is_the_canonical_frame(motions, motion_features):
  """features_to_joints returns the motion on the floor, root XZ of frame 0 at the origin and
  frame 0 facing +Z by its hips and shoulders (HumanML3D's new_joints)."""
  back = features.features_to_joints_list(motion_features[:1], with_last_frame=True)[0]
  np.testing.assert_allclose(features.recoverable_frame_list(motions[:1])[0],
                             np.asarray(jax.jit(features.canonicalize)(motions[0])), atol=1e-6)
  assert abs(back[..., 1].min()) < 1e-5
  np.testing.assert_allclose(back[0, 0, [0, 2]], 0.0, atol=1e-6)
  across = (back[0, 2] - back[0, 1]) + (back[0, 17] - back[0, 16])
  np.testing.assert_allclose(across[2], 0.0, atol=1e-5)   # hips/shoulders along X: faces +-Z
  assert across[0] < 0                                     # right side at -X: faces +Z


def test_zero_padding_is_ignored(motions, motion_features):
  batch = np.zeros((features.LIST_BATCH, features.LIST_JOINT_FRAMES, 22, 3), np.float32)
  batch[0, :50] = motions[0]
  batch[1, :44] = motions[1]
  lengths = np.full((features.LIST_BATCH,), 2, np.int32)
  lengths[:2] = [50, 44]
  out = np.asarray(features.batch_joints_to_features(jnp.asarray(batch), jnp.asarray(lengths)))
  assert out.shape == (features.LIST_BATCH, features.LIST_JOINT_FRAMES - 1, 263)
  np.testing.assert_allclose(out[0, :49], motion_features[0], atol=1e-4)
  np.testing.assert_allclose(out[1, :43], motion_features[1], atol=1e-4)
  assert not out[0, 49:].any() and not out[1, 43:].any()
  assert np.isfinite(out).all()


def test_features_are_invariant_to_placement(motions, motion_features):
  c, s = np.cos(1.3), np.sin(1.3)
  yaw = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)
  moved = motions[0] @ yaw.T + np.float32([4.0, 0.5, -2.0])
  np.testing.assert_allclose(features.joints_to_features_list([moved])[0], motion_features[0],
                             atol=2e-4)


def test_heading_crossing_180_degrees_flips_one_row_as_officially():
  motion = _spin()
  official = features.joints_to_features_list([motion])[0]
  fixed = features.joints_to_features_list([motion], heading_sign_fix=True)[0]
  np.testing.assert_allclose(official, reference_features(motion), atol=2e-4)
  np.testing.assert_allclose(fixed, reference_features(motion, sign_fix=True), atol=2e-4)
  # The spin turns 1.5 times, so the smoothed heading crosses 180 degrees once; in the official
  # features that one row's angular velocity has the wrong sign and nothing else changes.
  # Row 0 (identity -> frame 1) is left out: it is half the frame-1 heading, not a rate.
  assert (fixed[1:, 0] < -0.005).all() and (fixed[1:, 0] > -0.045).all()
  flipped = np.flatnonzero(official[:, 0] != fixed[:, 0])
  assert len(flipped) == 1 and official[flipped[0], 0] == -fixed[flipped[0], 0]
  same = np.ones(len(official), bool)
  same[flipped] = False
  np.testing.assert_array_equal(official[same], fixed[same])
  np.testing.assert_array_equal(official[:, 1:], fixed[:, 1:])
  # The fixed features round-trip exactly; the official ones drift by twice the flipped angle
  # after that row (as HumanML3D's new_joints do).
  target = features.recoverable_frame_list([motion])[0]
  back = features.features_to_joints_list([fixed], with_last_frame=True)[0]
  assert np.abs(back - target).max() < 1e-4
  drifted = features.features_to_joints_list([official], with_last_frame=True)[0]
  assert np.abs(drifted[:flipped[0] + 1] - target[:flipped[0] + 1]).max() < 1e-4
  assert np.abs(drifted - target).max() > 1e-2


def test_facing_backwards_is_finite():
  rest = skeleton.rest_pose()
  # Body facing exactly -Z: HumanML3D's shortest arc is 0/0 here.
  turned = rest * np.float32([-1, 1, -1])
  motion = np.stack([turned + [0, 1, 0.01 * t] for t in range(10)]).astype(np.float32)
  out = features.joints_to_features_list([motion])[0]
  assert np.isfinite(out).all()
  back = features.features_to_joints_list([out], with_last_frame=True)[0]
  np.testing.assert_allclose(back, features.recoverable_frame_list([motion])[0], atol=1e-4)


@jax.jit
def _rotation_checks(q, v, a, b):
  m = rotations.quaternion_to_matrix(q)
  flip = rotations.qbetween(jnp.float32([[0, 0, 1]]), jnp.float32([[0, 0, -1]]))
  arc = rotations.qbetween(a, b)
  return dict(
      rotated=rotations.qrot(q, v), by_matrix=jnp.einsum("bij,bj->bi", m, v), matrix=m,
      via_6d=rotations.cont6d_to_matrix(rotations.matrix_to_cont6d(m)),
      quat_back=rotations.matrix_to_quaternion(m), arc_a=rotations.qrot(arc, a),
      flipped=rotations.qrot(flip, jnp.float32([[0, 0, 1]])))


def test_rotation_helpers_agree():
  rng = np.random.default_rng(0)
  q = np.asarray(rng.normal(size=(16, 4)), np.float32)
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  v, a, b = (np.asarray(rng.normal(size=(16, 3)), np.float32) for _ in range(3))
  out = jax.tree_util.tree_map(np.asarray, _rotation_checks(q, v, a, b))
  np.testing.assert_allclose(out["rotated"], out["by_matrix"], atol=1e-5)
  np.testing.assert_allclose(out["via_6d"], out["matrix"], atol=1e-5)
  np.testing.assert_allclose(np.abs(np.sum(out["quat_back"] * q, -1)), 1.0, atol=1e-5)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  np.testing.assert_allclose(unit(out["arc_a"]), unit(b), atol=1e-5)
  np.testing.assert_allclose(out["flipped"], [[0, 0, -1]], atol=1e-6)


def test_features_to_joints_masks_by_length(motion_features):
  feats = motion_features[0]
  batch = np.zeros((features.LIST_BATCH, features.LIST_JOINT_FRAMES - 1, 263), np.float32)
  batch[:3, :len(feats)] = feats
  lengths = np.zeros((features.LIST_BATCH,), np.int32)
  lengths[:3] = [len(feats), 0, 10_000]
  out = np.asarray(features.features_to_joints(jnp.asarray(batch), jnp.asarray(lengths),
                                               with_last_frame=True))
  assert out.shape == (features.LIST_BATCH, features.LIST_JOINT_FRAMES, 22, 3)
  assert np.isfinite(out).all()
  assert out[0, :len(feats) + 1].any() and not out[0, len(feats) + 1:].any()
  assert not out[1].any()                     # no valid rows: all zero
  np.testing.assert_allclose(out[2, :len(feats)], out[0, :len(feats)], atol=1e-6)
