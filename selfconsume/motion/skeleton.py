"""The 22-joint SMPL-topology skeleton used by HumanML3D (Y up, the body faces +Z at rest).

Joint order, parents and kinematic chains are HumanML3D's `t2m` skeleton. `RAW_OFFSETS` are
HumanML3D's unit rest directions (used by its inverse kinematics to define local rotations);
`REST_OFFSETS` are the bone vectors, in metres, of the skeleton the procedural corpus and the
physics humanoid are built from (an adult of about 1.7 m in a T-pose; the real dataset's
target skeleton is a different person, and loaders never assume these lengths).
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 22

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)

# Chains start at the root (or at spine3 for the arms); HumanML3D's t2m_kinematic_chain.
KINEMATIC_CHAINS = (
    (0, 2, 5, 8, 11),          # right leg
    (0, 1, 4, 7, 10),          # left leg
    (0, 3, 6, 9, 12, 15),      # spine and head
    (9, 14, 17, 19, 21),       # right arm
    (9, 13, 16, 18, 20),       # left arm
)


def _parents_from_chains(chains) -> tuple[int, ...]:
  parents = [-1] * NUM_JOINTS
  for chain in chains:
    for parent, child in zip(chain[:-1], chain[1:]):
      parents[child] = parent
  return tuple(parents)


PARENTS = _parents_from_chains(KINEMATIC_CHAINS)

# HumanML3D's t2m_raw_offsets: the direction of each bone in the reference pose.
RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
    [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0],
    [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    [0, -1, 0],
], dtype=np.float32)

# Bone vectors child - parent in metres, T-pose, facing +Z, left = +X.
REST_OFFSETS = np.array([
    [0.000, 0.000, 0.000],     # pelvis (root; its height is set by the motion)
    [0.060, -0.090, 0.000],    # left_hip
    [-0.060, -0.090, 0.000],   # right_hip
    [0.000, 0.110, -0.010],    # spine1
    [0.030, -0.380, 0.000],    # left_knee
    [-0.030, -0.380, 0.000],   # right_knee
    [0.000, 0.135, 0.020],     # spine2
    [0.000, -0.400, -0.030],   # left_ankle
    [0.000, -0.400, -0.030],   # right_ankle
    [0.000, 0.055, 0.000],     # spine3
    [0.020, -0.060, 0.120],    # left_foot (toe joint)
    [-0.020, -0.060, 0.120],   # right_foot
    [0.000, 0.210, -0.030],    # neck
    [0.080, 0.110, 0.000],     # left_collar
    [-0.080, 0.110, 0.000],    # right_collar
    [0.000, 0.090, 0.050],     # head
    [0.120, 0.040, -0.010],    # left_shoulder
    [-0.120, 0.040, -0.010],   # right_shoulder
    [0.260, 0.000, -0.020],    # left_elbow
    [-0.260, 0.000, -0.020],   # right_elbow
    [0.250, 0.000, 0.000],     # left_wrist
    [-0.250, 0.000, 0.000],    # right_wrist
], dtype=np.float32)

BONE_LENGTHS = np.linalg.norm(REST_OFFSETS, axis=-1)

# HumanML3D's conventions for foot contacts and facing direction.
LEFT_FOOT = (7, 10)      # left ankle, left toe
RIGHT_FOOT = (8, 11)     # right ankle, right toe
FOOT_JOINTS = LEFT_FOOT + RIGHT_FOOT
FACE_JOINTS = (2, 1, 17, 16)  # right hip, left hip, right shoulder, left shoulder

FPS = 20
MIN_FRAMES = 40
MAX_FRAMES = 196


def rest_pose() -> np.ndarray:
  """Joint positions (22, 3) of the T-pose with the root at the origin."""
  positions = np.zeros((NUM_JOINTS, 3), np.float32)
  for j in range(1, NUM_JOINTS):
    positions[j] = positions[PARENTS[j]] + REST_OFFSETS[j]
  return positions


def standing_root_height() -> float:
  """Pelvis height above the ground when the lowest joint of the rest pose touches it."""
  return float(-rest_pose()[:, 1].min())
