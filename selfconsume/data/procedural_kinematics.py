"""Controls -> joints for the procedural corpus: root integration, planted feet, two-bone
leg IK and forward kinematics of spine and arms on the 22-joint skeleton.

Bone lengths are constant by construction (forward kinematics from REST_OFFSETS; the IK
places knee and ankle at exactly thigh and shin length), a foot in contact stays where it
was planted, and the flat foot's sole never goes below y = 0.
"""

from __future__ import annotations

import numpy as np

from selfconsume.motion import skeleton

_ANKLE_HEIGHT = -float(skeleton.REST_OFFSETS[10][1])   # flat foot: toe on the ground
_STAND_HEIGHT = 0.90                                   # pelvis, knees slightly bent
_NOMINAL_FOOT = np.array([[0.09, 0.0, 0.0], [-0.09, 0.0, 0.0]], np.float32)  # left, right
_THIGH = float(skeleton.BONE_LENGTHS[4])
_SHIN = float(skeleton.BONE_LENGTHS[7])
_LEG_REACH = 0.975 * (_THIGH + _SHIN)


def _rot_y(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                   np.stack([-s, z, c], -1)], -2)


def _rot_x(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                   np.stack([z, s, c], -1)], -2)


def _rot_z(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def _apply(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
  return np.einsum("...ij,...j->...i", rot, v)


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) runs of True."""
  padded = np.concatenate([[False], mask, [False]])
  edges = np.flatnonzero(padded[1:] != padded[:-1])
  return list(zip(edges[::2], edges[1::2]))


def _foot_track(contact, nominal, heading, step_height, air):
  """World ankle positions (T, 3) and foot yaw (T,) of one foot.

  Planted at its mid-stance nominal position for each contact interval; between plants the
  foot moves on a smoothstep in XZ and a sine arc (plus the airborne lift) in height.
  """
  pos = nominal.copy()
  pos[:, 1] = _ANKLE_HEIGHT + air
  yaw = heading.copy()
  plants = []
  for a, b in _intervals(contact):
    mid = (a + b - 1) // 2
    plant = np.array([nominal[mid, 0], _ANKLE_HEIGHT, nominal[mid, 2]], np.float32)
    pos[a:b] = plant
    yaw[a:b] = heading[mid]
    plants.append((a, b, plant, heading[mid]))
  for (_, b0, p0, y0), (a1, _, p1, y1) in zip(plants[:-1], plants[1:]):
    length = a1 - b0
    s = (np.arange(1, length + 1, dtype=np.float32)) / (length + 1)
    smooth = s * s * (3 - 2 * s)
    pos[b0:a1] = p0 + smooth[:, None] * (p1 - p0)
    pos[b0:a1, 1] = _ANKLE_HEIGHT + step_height[b0:a1] * np.sin(np.pi * s) + air[b0:a1]
    yaw[b0:a1] = y0 + smooth * (y1 - y0)
  return pos, yaw


def _two_bone_ik(hip, target, pole):
  """Knee and (reachable) ankle positions for thigh/shin lengths; the knee bends toward pole."""
  offset = target - hip
  dist = np.linalg.norm(offset, axis=-1, keepdims=True)
  direction = offset / np.maximum(dist, 1e-6)
  dist = np.clip(dist, abs(_THIGH - _SHIN) + 1e-3, _THIGH + _SHIN - 1e-4)
  ankle = hip + direction * dist
  along = (_THIGH ** 2 - _SHIN ** 2 + dist ** 2) / (2 * dist)
  across = np.sqrt(np.maximum(_THIGH ** 2 - along ** 2, 0.0))
  bend = pole - np.sum(pole * direction, -1, keepdims=True) * direction
  bend /= np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-6)
  return hip + direction * along + bend * across, ankle


def controls_to_joints(c: dict, start_xz: np.ndarray, start_heading: float) -> np.ndarray:
  """Global joint positions of a motion.

  Args:
    c: controls of T frames, as made by procedural_actions.neutral_controls.
    start_xz: (2,) root position on the ground in frame 0.
    start_heading: yaw of frame 0 in radians (0 faces +Z; positive turns left).

  Returns:
    (T, 22, 3) float32 joint positions in metres, Y up.
  """
  num_frames = len(c["yaw_rate"])
  offsets = skeleton.REST_OFFSETS
  heading = start_heading + np.concatenate([[0.0], np.cumsum(c["yaw_rate"][:-1])])
  heading = heading.astype(np.float32)
  r_yaw = _rot_y(heading)
  vel = np.stack([c["vel"][:, 0], np.zeros(num_frames, np.float32), c["vel"][:, 1]], -1)
  world_vel = _apply(r_yaw, vel)
  root = np.zeros((num_frames, 3), np.float32)
  steps = np.concatenate([np.zeros((1, 2), np.float32), world_vel[:-1][:, [0, 2]]])
  root[:, [0, 2]] = start_xz + np.cumsum(steps, axis=0)
  # Feet: planted or swinging, or pulled towards a pelvis-relative target.
  ankles, foot_yaw = [], []
  for f in range(2):
    nominal = root + _apply(r_yaw, _NOMINAL_FOOT[f])
    pos, yaw = _foot_track(c["contact"][:, f], nominal, heading, c["step_height"], c["air"])
    ankles.append(pos)
    foot_yaw.append(yaw)
  ankles = np.stack(ankles, 1)
  foot_yaw = np.stack(foot_yaw, 1)
  # Pelvis height: desired, lowered where a planted foot would be out of reach.
  hips_local = offsets[[1, 2]]
  height = _STAND_HEIGHT + c["height"] + c["bounce"] + c["air"]
  for f in range(2):
    hip_xz = root[:, [0, 2]] + _apply(r_yaw, hips_local[f])[:, [0, 2]]
    horiz = np.linalg.norm(ankles[:, f, [0, 2]] - hip_xz, axis=-1)
    reach = np.sqrt(np.maximum(_LEG_REACH ** 2 - horiz ** 2, 0.0))
    limit = ankles[:, f, 1] + reach - hips_local[f, 1]
    free = c["override_w"][:, f] > 0
    height = np.where(c["contact"][:, f] & ~free, np.minimum(height, limit), height)
  root[:, 1] = height
  # Pelvis-relative foot targets (kicks, a held foot while hopping).
  ankles_xz = [ankles[:, f][:, [0, 2]].copy() for f in range(2)]
  for f in range(2):
    w = c["override_w"][:, f][:, None]
    target = root + _apply(r_yaw, c["override"][:, f])
    target[:, 1] = np.maximum(target[:, 1], _ANKLE_HEIGHT)
    # Lift before moving sideways, so a foot leaving the ground does not slide on it.
    w_xz = w * w
    ankles[:, f, 1] = (1 - w[:, 0]) * ankles[:, f, 1] + w[:, 0] * target[:, 1]
    ankles[:, f, 0] = (1 - w_xz[:, 0]) * ankles_xz[f][:, 0] + w_xz[:, 0] * target[:, 0]
    ankles[:, f, 2] = (1 - w_xz[:, 0]) * ankles_xz[f][:, 1] + w_xz[:, 0] * target[:, 2]

  joints = np.zeros((num_frames, skeleton.NUM_JOINTS, 3), np.float32)
  joints[:, 0] = root
  # Spine bends progressively: spine1, spine2 take part of the lean, spine3 and above all.
  torso = {}
  for j, share in ((3, 0.4), (6, 0.7), (9, 1.0)):
    torso[j] = r_yaw @ _rot_x(share * c["pitch"]) @ _rot_z(share * c["roll"])
  chest = torso[9]
  for j in (3, 6, 9):
    joints[:, j] = joints[:, skeleton.PARENTS[j]] + _apply(torso[j], offsets[j])
  for j in (12, 15, 13, 14, 16, 17):
    joints[:, j] = joints[:, skeleton.PARENTS[j]] + _apply(chest, offsets[j])
  for arm, (elbow, wrist) in enumerate(((18, 20), (19, 21))):
    side = 1.0 if arm == 0 else -1.0
    upper = chest @ _rot_x(-c["flex"][:, arm]) @ _rot_z(side * (c["abduct"][:, arm] - np.pi / 2))
    fore = upper @ _rot_y(-side * c["elbow"][:, arm])
    joints[:, elbow] = joints[:, skeleton.PARENTS[elbow]] + _apply(upper, offsets[elbow])
    joints[:, wrist] = joints[:, elbow] + _apply(fore, offsets[wrist])
  for f, (hip, knee, ankle, toe) in enumerate(((1, 4, 7, 10), (2, 5, 8, 11))):
    joints[:, hip] = root + _apply(r_yaw, offsets[hip])
    foot_rot = _rot_y(foot_yaw[:, f])
    pole = _apply(foot_rot, np.array([0.0, 0.0, 1.0], np.float32))
    target = ankles[:, f]
    # Swinging or pulled feet may be out of reach: bring them closer to the hip.
    joints[:, knee], joints[:, ankle] = _two_bone_ik(joints[:, hip], target, pole)
    joints[:, toe] = joints[:, ankle] + _apply(foot_rot, offsets[toe])
  return joints
