"""Controls -> joints for the procedural corpus: root integration, planted feet, two-bone
leg and arm IK and forward kinematics of pelvis, spine and arms on the 22-joint skeleton.

Bone lengths are constant by construction (forward kinematics from REST_OFFSETS; the IK
places knee/ankle and elbow/wrist at exactly bone length), a foot in contact stays where it
was planted, and the flat foot's sole never goes below y = 0.

Besides the body-frame controls of `procedural_actions.neutral_controls` (root velocity, yaw
rate, heights, torso lean, arm angles, foot contacts), an action may pin limbs to targets
given in the *start frame* of the motion (root XZ of frame 0 at the origin, facing +Z, left
+X; the floor at y = 0): ankle, toe and wrist positions and knee/elbow bend directions, each
with a weight that blends from the free pose (0) to the target (1). The floor actions
(kneeling, crawling, lying: procedural_floor.py) are designed in that frame with the same
geometry helpers (`pelvis_rotation`, `hip_positions`, `upper_body`, `two_bone_ik`), so the
joints here are exactly the ones they planned.
"""

from __future__ import annotations

import numpy as np

from selfconsume.motion import skeleton

_OFFSETS = skeleton.REST_OFFSETS
ANKLE_HEIGHT = -float(_OFFSETS[10][1])   # flat foot: toe on the ground
STAND_HEIGHT = 0.90                      # pelvis, knees slightly bent
NOMINAL_FOOT = np.array([[0.09, 0.0, 0.0], [-0.09, 0.0, 0.0]], np.float32)  # left, right
THIGH = float(skeleton.BONE_LENGTHS[4])
SHIN = float(skeleton.BONE_LENGTHS[7])
FOOT = float(skeleton.BONE_LENGTHS[10])      # ankle -> toe joint
UPPER_ARM = float(skeleton.BONE_LENGTHS[18])
FOREARM = float(skeleton.BONE_LENGTHS[20])
_LEG_REACH = 0.975 * (THIGH + SHIN)
# Share of the torso lean/bend/twist taken by the bones up to spine1, spine2 and spine3;
# the neck bone, collars and shoulders take all of it (the chest).
SPINE_SHARES = ((3, 0.3), (6, 0.55), (9, 0.8))
LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))        # (hip, knee, ankle, toe), left then right
ARMS = ((16, 18, 20), (17, 19, 21))          # (shoulder, elbow, wrist)


def rot_y(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                   np.stack([-s, z, c], -1)], -2)


def rot_x(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                   np.stack([z, s, c], -1)], -2)


def rot_z(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def apply(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
  return np.einsum("...ij,...j->...i", rot, v)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def intervals(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) runs of True."""
  padded = np.concatenate([[False], mask, [False]])
  edges = np.flatnonzero(padded[1:] != padded[:-1])
  return list(zip(edges[::2], edges[1::2]))


# ----------------------------------------------------------------------------- geometry
def pelvis_rotation(heading, pitch, roll) -> np.ndarray:
  """(T, 3, 3): yaw `heading`, then the pelvis tilted forward by `pitch` and then rolled by
  `roll` about the (heading's) forward axis (radians; positive pitch leans forward, positive
  roll lowers the right hip). Rolling after pitching keeps the roll's effect on the hip
  heights the same when the pelvis is tilted far forward (on all fours)."""
  return rot_y(heading) @ rot_z(roll) @ rot_x(pitch)


def hip_positions(root: np.ndarray, pelvis_rot: np.ndarray) -> np.ndarray:
  """(T, 2, 3) left and right hip joints of a pelvis at `root` (T, 3) turned by pelvis_rot."""
  return root[:, None] + apply(pelvis_rot[:, None], _OFFSETS[[1, 2]])


def upper_body(root, pelvis_rot, pitch, roll, twist, head_pitch) -> tuple[dict, np.ndarray]:
  """Spine, neck, head, collars and shoulders by forward kinematics.

  The torso bends progressively: the bones up to spine1, spine2 and spine3 take growing
  parts of the lean (`pitch`), side bend (`roll`) and twist about the spine, the chest (neck
  bone, collars, shoulders) all of it; the head nods by `head_pitch` on top of that.

  Returns:
    ({joint: (T, 3)} for joints 3, 6, 9, 12, 13, 14, 15, 16, 17, and the chest rotation
    (T, 3, 3) the arms hang from).
  """
  joints = {0: root}
  rot = {}
  for j, share in SPINE_SHARES:
    rot[j] = pelvis_rot @ rot_x(share * pitch) @ rot_z(share * roll) @ rot_y(share * twist)
    joints[j] = joints[skeleton.PARENTS[j]] + apply(rot[j], _OFFSETS[j])
  chest = pelvis_rot @ rot_x(pitch) @ rot_z(roll) @ rot_y(twist)
  for j in (12, 13, 14, 16, 17):
    joints[j] = joints[skeleton.PARENTS[j]] + apply(chest, _OFFSETS[j])
  joints[15] = joints[12] + apply(chest @ rot_x(head_pitch), _OFFSETS[15])
  del joints[0]
  return joints, chest


def two_bone_ik(base, target, pole, first: float, second: float):
  """Middle and (reachable) end joints of a two-bone chain from `base` towards `target`.

  The middle joint (knee, elbow) bends towards the direction `pole`; a target out of reach
  is pulled onto the reachable shell along the base -> target line. All (..., 3).
  """
  offset = target - base
  dist = np.linalg.norm(offset, axis=-1, keepdims=True)
  direction = offset / np.maximum(dist, 1e-6)
  dist = np.clip(dist, abs(first - second) + 1e-3, first + second - 1e-4)
  end = base + direction * dist
  along = (first ** 2 - second ** 2 + dist ** 2) / (2 * dist)
  across = np.sqrt(np.maximum(first ** 2 - along ** 2, 0.0))
  bend = pole - np.sum(pole * direction, -1, keepdims=True) * direction
  bend /= np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-6)
  return base + direction * along + bend * across, end


def arm_fk(chest, shoulder, side: float, flex, abduct, elbow):
  """Elbow and wrist (T, 3) from arm angles: raise forwards (`flex`), sideways (`abduct`,
  0 = hanging), elbow bend; `side` is +1 for the left arm, -1 for the right."""
  upper = chest @ rot_x(-flex) @ rot_z(side * (abduct - np.pi / 2))
  fore = upper @ rot_y(-side * elbow)
  e = 18 if side > 0 else 19
  elbow_pos = shoulder + apply(upper, _OFFSETS[e])
  return elbow_pos, elbow_pos + apply(fore, _OFFSETS[e + 2])


def _foot_track(contact, nominal, heading, step_height, air, pinned, pinned_w):
  """World ankle positions (T, 3) and foot yaw (T,) of one foot.

  Planted for each contact interval at its mid-stance nominal position, or, when the
  interval overlaps frames where the ankle is pinned to a target (pinned_w == 1), at that
  target (so a pinned stance and the free stance it continues into are one plant). Between
  plants the foot moves on a smoothstep in XZ and a sine arc (plus the airborne lift) in
  height.
  """
  pos = nominal.copy()
  pos[:, 1] = ANKLE_HEIGHT + air
  yaw = heading.copy()
  plants = []
  for a, b in intervals(contact):
    held = np.flatnonzero(pinned_w[a:b] >= 1.0)
    mid = a + held[0] if len(held) else (a + b - 1) // 2
    source = pinned if len(held) else nominal
    plant = np.array([source[mid, 0], ANKLE_HEIGHT, source[mid, 2]], np.float32)
    pos[a:b] = plant
    yaw[a:b] = heading[mid]
    plants.append((a, b, plant, heading[mid]))
  for (_, b0, p0, y0), (a1, _, p1, y1) in zip(plants[:-1], plants[1:]):
    length = a1 - b0
    s = (np.arange(1, length + 1, dtype=np.float32)) / (length + 1)
    smooth = s * s * (3 - 2 * s)
    pos[b0:a1] = p0 + smooth[:, None] * (p1 - p0)
    pos[b0:a1, 1] = ANKLE_HEIGHT + step_height[b0:a1] * np.sin(np.pi * s) + air[b0:a1]
    yaw[b0:a1] = y0 + smooth * (y1 - y0)
  return pos, yaw


def _blend(w: np.ndarray, free: np.ndarray, target: np.ndarray) -> np.ndarray:
  w = w[..., None]
  return (1.0 - w) * free + w * target


def controls_to_joints(c: dict, start_xz: np.ndarray, start_heading: float,
                       stance: float = float(NOMINAL_FOOT[0, 0])) -> np.ndarray:
  """Global joint positions of a motion.

  Args:
    c: controls of T frames, as made by procedural_actions.neutral_controls.
    start_xz: (2,) root position on the ground in frame 0.
    start_heading: yaw of frame 0 in radians (0 faces +Z; positive turns left).
    stance: lateral distance (m) of each ankle from the pelvis when standing.

  Returns:
    (T, 22, 3) float32 joint positions in metres, Y up.
  """
  num_frames = len(c["yaw_rate"])
  start_rot = rot_y(np.float32(start_heading))
  start_pos = np.array([start_xz[0], 0.0, start_xz[1]], np.float32)

  def from_start(v):   # start-frame points -> world
    return start_pos + apply(start_rot, v)

  heading = start_heading + np.concatenate([[0.0], np.cumsum(c["yaw_rate"][:-1])])
  heading = heading.astype(np.float32)
  r_yaw = rot_y(heading)
  vel = np.stack([c["vel"][:, 0], np.zeros(num_frames, np.float32), c["vel"][:, 1]], -1)
  world_vel = apply(r_yaw, vel)
  root = np.zeros((num_frames, 3), np.float32)
  steps = np.concatenate([np.zeros((1, 2), np.float32), world_vel[:-1][:, [0, 2]]])
  root[:, [0, 2]] = start_xz + np.cumsum(steps, axis=0)
  feet_root = root.copy()      # where the feet are placed from: the pelvis without its shift
  shift = np.stack([c["shift"][:, 0], np.zeros(num_frames, np.float32), c["shift"][:, 1]], -1)
  root += apply(r_yaw, shift)
  ankle_w = c["ankle_w"]
  ankle_target = from_start(c["ankle_at"])
  # Feet: planted or swinging, or pulled towards a pelvis-relative target.
  nominal_foot = np.array([[stance, 0.0, 0.0], [-stance, 0.0, 0.0]], np.float32)
  ankles, foot_yaw = [], []
  for f in range(2):
    nominal = feet_root + apply(r_yaw, nominal_foot[f])
    pos, yaw = _foot_track(c["contact"][:, f], nominal, heading, c["step_height"], c["air"],
                           ankle_target[:, f], ankle_w[:, f])
    ankles.append(pos)
    foot_yaw.append(yaw)
  ankles = np.stack(ankles, 1)
  foot_yaw = np.stack(foot_yaw, 1)
  pelvis_rot = pelvis_rotation(heading, c["pelvis_pitch"], c["pelvis_roll"])
  hips_local = apply(pelvis_rot[:, None], _OFFSETS[[1, 2]])       # (T, 2, 3)
  # Pelvis height: desired, lowered where a planted foot would be out of reach.
  height = STAND_HEIGHT + c["height"] + c["bounce"] + c["air"]
  for f in range(2):
    hip_xz = root[:, [0, 2]] + hips_local[:, f, [0, 2]]
    horiz = np.linalg.norm(ankles[:, f, [0, 2]] - hip_xz, axis=-1)
    reach = np.sqrt(np.maximum(_LEG_REACH ** 2 - horiz ** 2, 0.0))
    limit = ankles[:, f, 1] + reach - hips_local[:, f, 1]
    free = (c["override_w"][:, f] > 0) | (ankle_w[:, f] > 0)
    height = np.where(c["contact"][:, f] & ~free, np.minimum(height, limit), height)
  root[:, 1] = height
  # Pelvis-relative foot targets (kicks, a held foot while hopping).
  ankles_xz = [ankles[:, f][:, [0, 2]].copy() for f in range(2)]
  for f in range(2):
    w = c["override_w"][:, f][:, None]
    target = root + apply(r_yaw, c["override"][:, f])
    target[:, 1] = np.maximum(target[:, 1], ANKLE_HEIGHT)
    # Lift before moving sideways, so a foot leaving the ground does not slide on it.
    w_xz = w * w
    ankles[:, f, 1] = (1 - w[:, 0]) * ankles[:, f, 1] + w[:, 0] * target[:, 1]
    ankles[:, f, 0] = (1 - w_xz[:, 0]) * ankles_xz[f][:, 0] + w_xz[:, 0] * target[:, 0]
    ankles[:, f, 2] = (1 - w_xz[:, 0]) * ankles_xz[f][:, 1] + w_xz[:, 0] * target[:, 2]
  ankles = _blend(ankle_w, ankles, ankle_target)

  joints = np.zeros((num_frames, skeleton.NUM_JOINTS, 3), np.float32)
  joints[:, 0] = root
  body, chest = upper_body(root, pelvis_rot, c["pitch"], c["roll"], c["twist"], c["head_pitch"])
  for j, pos in body.items():
    joints[:, j] = pos
  wrist_target = from_start(c["wrist_at"])
  reach_target = ((feet_root * np.array([1.0, 0.0, 1.0], np.float32))[:, None]
                  + apply(r_yaw[:, None], c["reach"]))
  elbow_pole = apply(r_yaw[:, None], c["elbow_pole"])
  for arm, (shoulder, elbow, wrist) in enumerate(ARMS):
    side = 1.0 if arm == 0 else -1.0
    elbow_fk, wrist_fk = arm_fk(chest, joints[:, shoulder], side, c["flex"][:, arm],
                                c["abduct"][:, arm], c["elbow"][:, arm])
    w_pin, w_reach = c["wrist_w"][:, arm], c["reach_w"][:, arm]
    w = np.clip(w_pin + w_reach, 0.0, 1.0)
    if not w.any():
      joints[:, elbow], joints[:, wrist] = elbow_fk, wrist_fk
      continue
    goal = ((w_pin[:, None] * wrist_target[:, arm] + w_reach[:, None] * reach_target[:, arm])
            / np.maximum(w, 1e-6)[:, None])
    # A hand going to a target arrives from above it (across first, then down) and leaves
    # it upwards, so a hand put on the floor does not slide on it; it never goes below it.
    w_across, w_down = 1.0 - (1.0 - w) ** 2, w * w
    target = _blend(w_across, wrist_fk, goal)
    target[:, 1] = np.maximum((1.0 - w_down) * wrist_fk[:, 1] + w_down * goal[:, 1], 0.0)
    pole = _blend(w, elbow_fk - joints[:, shoulder], elbow_pole[:, arm])
    joints[:, elbow], joints[:, wrist] = two_bone_ik(joints[:, shoulder], target, pole,
                                                     UPPER_ARM, FOREARM)
  knee_pole = from_start(c["knee_pole"]) - start_pos
  toe_target = from_start(c["toe_at"])
  for f, (hip, knee, ankle, toe) in enumerate(LEGS):
    joints[:, hip] = root + hips_local[:, f]
    foot_rot = rot_y(foot_yaw[:, f])
    forward = apply(foot_rot, np.array([0.0, 0.0, 1.0], np.float32))
    pole = _blend(c["knee_pole_w"][:, f], forward, knee_pole[:, f])
    # Swinging or pulled feet may be out of reach: bring them closer to the hip.
    joints[:, knee], joints[:, ankle] = two_bone_ik(joints[:, hip], ankles[:, f], pole,
                                                    THIGH, SHIN)
    flat_toe = joints[:, ankle] + apply(foot_rot, _OFFSETS[toe])
    toe_dir = _blend(c["toe_w"][:, f], flat_toe, toe_target[:, f]) - joints[:, ankle]
    joints[:, toe] = joints[:, ankle] + FOOT * _unit(toe_dir)
  return joints
