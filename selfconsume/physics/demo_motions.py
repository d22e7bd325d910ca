"""Small kinematic motions on the skeleton (walk, stand, squat) and injected artefacts.

They are built by forward kinematics from smooth joint-angle curves, then grounded: the root
moves so the lower foot stays planted and the lowest joint touches y = 0. Used by the physics
tests and benchmark so they do not depend on the full procedural corpus.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume.motion import rotations
from selfconsume.motion import skeleton
from selfconsume.physics import humanoid
from selfconsume.physics import retarget

_BALL = {j: i for i, j in enumerate(humanoid.BALL_JOINTS)}
_forward_kinematics = jax.jit(retarget.forward_kinematics)


def _local_rotations(kind: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Local rotation vectors (F, NUM_BALLS, 3) of a motion kind at times t (s)."""
  f = len(t)
  rv = np.zeros((f, len(humanoid.BALL_JOINTS), 3), np.float32)
  freq = rng.uniform(0.8, 1.1)
  phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
  arm_down = rng.uniform(1.2, 1.4)
  rv[:, _BALL[16], 2] = -arm_down
  rv[:, _BALL[17], 2] = arm_down
  if kind == "walk":
    hip, knee = rng.uniform(0.3, 0.45), rng.uniform(0.6, 0.9)
    rv[:, _BALL[1], 0] = -hip * np.sin(phase)
    rv[:, _BALL[2], 0] = hip * np.sin(phase)
    rv[:, _BALL[4], 0] = knee * np.maximum(0, np.cos(phase)) ** 2 + 0.05
    rv[:, _BALL[5], 0] = knee * np.maximum(0, -np.cos(phase)) ** 2 + 0.05
    rv[:, _BALL[7], 0] = -0.2 * np.maximum(0, np.cos(phase))
    rv[:, _BALL[8], 0] = -0.2 * np.maximum(0, -np.cos(phase))
    rv[:, _BALL[16], 1] = -0.3 * np.sin(phase)
    rv[:, _BALL[17], 1] = -0.3 * np.sin(phase)
    rv[:, _BALL[18], 1] = -0.3
    rv[:, _BALL[19], 1] = 0.3
  elif kind == "squat":
    depth = rng.uniform(0.4, 0.8) * (0.5 - 0.5 * np.cos(phase))
    rv[:, _BALL[1], 0] = -depth
    rv[:, _BALL[2], 0] = -depth
    rv[:, _BALL[4], 0] = 2 * depth
    rv[:, _BALL[5], 0] = 2 * depth
    rv[:, _BALL[7], 0] = -depth
    rv[:, _BALL[8], 0] = -depth
    rv[:, _BALL[3], 0] = -0.3 * depth
    rv[:, _BALL[16], 1] = -1.2 * depth
    rv[:, _BALL[17], 1] = -1.2 * depth
  elif kind == "stand":
    rv[:, _BALL[3], 2] = 0.05 * np.sin(phase)
    rv[:, _BALL[16], 2] += 0.6 * (0.5 - 0.5 * np.cos(phase))       # wave the left arm
    rv[:, _BALL[18], 1] = -0.8 * (0.5 - 0.5 * np.cos(2 * phase))
    rv[:, _BALL[12], 1] = 0.2 * np.sin(0.5 * phase)
  else:
    raise ValueError(f"unknown demo motion kind {kind!r}")
  return rv


def make_motion(kind: str, frames: int, seed: int = 0, fps: float = skeleton.FPS) -> np.ndarray:
  """A grounded motion: joint positions (frames, 22, 3), Y up, lowest joint on y = 0."""
  rng = np.random.default_rng(seed)
  t = np.arange(frames) / fps
  rv = _local_rotations(kind, t, rng)
  heading = rng.uniform(-np.pi, np.pi)
  root_quat = np.tile(np.array([np.cos(heading / 2), 0, np.sin(heading / 2), 0], np.float32),
                      (frames, 1))
  joints = np.asarray(_forward_kinematics(
      jnp.zeros((frames, 3)), jnp.asarray(root_quat), jax.jit(rotations.axis_angle_to_quaternion)(jnp.asarray(rv))))
  # Plant the lower foot: move the root opposite to that foot's motion relative to the root.
  feet = np.array(skeleton.FOOT_JOINTS)
  root = np.zeros((frames, 3), np.float32)
  for i in range(1, frames):
    stance = feet[np.argmin(joints[i - 1, feet, 1])]
    step = joints[i, stance] - joints[i - 1, stance]
    root[i] = root[i - 1] - step * np.array([1, 0, 1])
  joints = joints + root[:, None, :]
  # Ground every frame: its lowest joint rests on y = 0.
  joints[..., 1] -= joints[..., 1].min(axis=1, keepdims=True)
  return joints.astype(np.float32)


def make_batch(frames: int, count: int, seed: int = 0,
               kinds=("walk", "stand", "squat")) -> np.ndarray:
  """(count, frames, 22, 3): the kinds in turn, each with its own seed."""
  return np.stack([make_motion(kinds[i % len(kinds)], frames, seed + i) for i in range(count)])


def lift(joints: np.ndarray, metres: float) -> np.ndarray:
  """Floating (metres > 0) or sinking (metres < 0) artefact: shift the whole motion in Y."""
  return joints + np.array([0.0, metres, 0.0], np.float32)


def slide(joints: np.ndarray, speed: float = 0.6, fps: float = skeleton.FPS,
          seed: int = 0) -> np.ndarray:
  """Skating artefact: the whole body (feet included) drifts horizontally at `speed` m/s."""
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=2)
  direction /= np.linalg.norm(direction)
  t = np.arange(joints.shape[-3]) / fps
  drift = np.zeros(joints.shape[-3:-2] + (3,), np.float32)
  drift[:, 0] = speed * t * direction[0]
  drift[:, 2] = speed * t * direction[1]
  return joints + drift[:, None, :]


def jitter(joints: np.ndarray, sigma: float = 0.015, seed: int = 0) -> np.ndarray:
  """High-frequency artefact: i.i.d. Gaussian noise (sigma metres) on every joint and frame."""
  rng = np.random.default_rng(seed)
  return joints + rng.normal(scale=sigma, size=joints.shape).astype(np.float32)
