"""Physical plausibility of joint-position motions: float, penetrate, skate, jerk.

Adapted to joints from PhysDiff / UHC, which measure the body mesh: the "lowest point" of a
frame is its lowest joint (the data put the feet's lowest joints on y = 0).

  float_mm      mean over frames of how far the lowest joint is above the ground, beyond a
                small tolerance (mm).
  penetrate_mm  mean over frames of how far the lowest joint is below the ground (mm).
  skate         share of foot-contact frames (a foot joint near the ground on two
                consecutive frames) in which that foot joint slides horizontally faster than
                `skate_speed`.
  jerk          mean norm of the third time derivative of joint positions (m/s^3).

Every function takes joints (B, F, 22, 3) and lengths (B,) and returns (B,) arrays; frames at
or beyond a motion's length are ignored.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume.motion import skeleton
from selfconsume.motion.frames import frame_mask

# Height of each foot joint above the floor when the foot stands flat (toe joints touch it).
_FOOT = np.array(skeleton.FOOT_JOINTS)
_FOOT_REST_HEIGHT = (skeleton.rest_pose()[_FOOT, 1] - skeleton.rest_pose()[:, 1].min())


def _masked_mean(x: jax.Array, mask: jax.Array, axes) -> jax.Array:
  mask = mask.astype(x.dtype)
  return jnp.sum(x * mask, axis=axes) / jnp.maximum(jnp.sum(mask, axis=axes), 1.0)


@functools.partial(jax.jit, static_argnames=(
    "fps", "float_tolerance", "contact_height", "skate_speed"))
def physics_metrics(joints: jax.Array, lengths: jax.Array, *, fps: float = skeleton.FPS,
                    float_tolerance: float = 0.005, contact_height: float = 0.05,
                    skate_speed: float = 0.3) -> dict[str, jax.Array]:
  """Float, penetrate, skate and jerk per motion.

  Args:
    joints: (B, F, 22, 3) joint positions in metres, Y up, ground at y = 0.
    lengths: (B,) number of valid frames per motion.
    fps: frame rate.
    float_tolerance: heights (m) of the lowest joint up to this count as on the ground.
    contact_height: a foot joint is in contact when it is within this (m) of its flat-foot
      height above the ground.
    skate_speed: horizontal speed (m/s) above which a foot in contact slides.

  Returns:
    dict of (B,) float32 arrays: float_mm, penetrate_mm, skate (share in [0, 1]), jerk.
  """
  joints = jnp.asarray(joints, jnp.float32)
  lengths = jnp.asarray(lengths, jnp.int32)
  frames = joints.shape[1]
  mask = frame_mask(lengths, frames)

  lowest = jnp.min(joints[..., 1], axis=-1)                       # (B, F)
  float_mm = 1000.0 * _masked_mean(jnp.maximum(lowest - float_tolerance, 0.0), mask, 1)
  penetrate_mm = 1000.0 * _masked_mean(jnp.maximum(-lowest, 0.0), mask, 1)

  feet = joints[:, :, _FOOT, :]                                   # (B, F, 4, 3)
  near = (feet[..., 1] - jnp.asarray(_FOOT_REST_HEIGHT)) < contact_height
  contact = near[:, 1:] & near[:, :-1] & frame_mask(lengths, frames, 1)[..., None]
  step = feet[:, 1:, :, :] - feet[:, :-1, :, :]
  speed = jnp.sqrt(step[..., 0] ** 2 + step[..., 2] ** 2 + 1e-12) * fps
  sliding = contact & (speed > skate_speed)
  skate = jnp.sum(sliding, axis=(1, 2)) / jnp.maximum(jnp.sum(contact, axis=(1, 2)), 1)

  if frames >= 4:
    third = (joints[:, 3:] - 3 * joints[:, 2:-1] + 3 * joints[:, 1:-2] - joints[:, :-3])
    jerk_norm = jnp.sqrt(jnp.sum(third ** 2, axis=-1) + 1e-12).mean(axis=-1) * fps ** 3
    jerk = _masked_mean(jerk_norm, frame_mask(lengths, frames, 3), 1)
  else:
    jerk = jnp.zeros(joints.shape[0])
  return {"float_mm": float_mm, "penetrate_mm": penetrate_mm,
          "skate": skate.astype(jnp.float32), "jerk": jerk}
