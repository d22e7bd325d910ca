"""Joint positions -> the humanoid's tracking targets (root trajectory + local joint rotations).

Inverse kinematics on the skeleton: the pelvis and spine3 (joints with several children)
get the rotation that carries their rest frame (primary bone + a left-right axis) onto the
posed one; every other body gets the smallest rotation that turns its rest bone direction
(after its parent's rotation) onto the posed bone. Twist about a bone is left at zero: joint
positions do not determine it, and it does not move any joint. All functions are jnp and
work on any leading batch shape.

Quaternions are (w, x, y, z), as in MuJoCo.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume.motion import rotations
from selfconsume.motion import skeleton
from selfconsume.physics import humanoid

_EPS = 1e-8


def _normalize(v: jax.Array) -> jax.Array:
  return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + _EPS)


def _frame(primary: jax.Array, secondary: jax.Array) -> jax.Array:
  """Orthonormal frame (..., 3, 3) (columns) from a primary and a secondary direction."""
  e1 = _normalize(primary)
  e2 = _normalize(secondary - jnp.sum(secondary * e1, -1, keepdims=True) * e1)
  e3 = jnp.cross(e1, e2)
  return jnp.stack([e1, e2, e3], axis=-1)


def _swing(a: jax.Array, b: jax.Array) -> jax.Array:
  """Smallest rotation matrix (..., 3, 3) turning direction a onto direction b."""
  a, b = _normalize(a), _normalize(b)
  v = jnp.cross(a, b)
  c = jnp.sum(a * b, -1)[..., None, None]
  zero = jnp.zeros_like(v[..., 0])
  vx = jnp.stack([
      jnp.stack([zero, -v[..., 2], v[..., 1]], -1),
      jnp.stack([v[..., 2], zero, -v[..., 0]], -1),
      jnp.stack([-v[..., 1], v[..., 0], zero], -1),
  ], axis=-2)
  return jnp.eye(3) + vx + vx @ vx / jnp.maximum(1.0 + c, 1e-4)


def global_rotations(joints: jax.Array) -> jax.Array:
  """World rotation of every simulated body: (..., 22, 3) -> (..., 17, 3, 3) (BODY_JOINTS order)."""
  rest = jnp.asarray(skeleton.REST_OFFSETS)
  parents = skeleton.PARENTS
  rot = {}

  def fit(j: int, primary_child: int, left: int, right: int) -> jax.Array:
    posed = _frame(joints[..., primary_child, :] - joints[..., j, :],
                   joints[..., left, :] - joints[..., right, :])
    rest_frame = _frame(_rest_vector(j, primary_child), _rest_vector(j, left) -
                        _rest_vector(j, right))
    return posed @ jnp.swapaxes(rest_frame, -1, -2)

  for j in humanoid.BODY_JOINTS:
    if j == 0:
      rot[j] = fit(0, 3, 1, 2)
    elif j == 9:
      rot[j] = fit(9, 12, 13, 14)
    else:
      c = humanoid.BONE_CHILD[j]
      parent_rot = rot[parents[j]]
      a = jnp.einsum("...ij,j->...i", parent_rot, rest[c])
      b = joints[..., c, :] - joints[..., j, :]
      rot[j] = _swing(a, b) @ parent_rot
  return jnp.stack([rot[j] for j in humanoid.BODY_JOINTS], axis=-3)


def _rest_vector(j: int, descendant: int) -> jax.Array:
  """Rest-pose vector from joint j to one of its descendants."""
  rest_pose = jnp.asarray(skeleton.rest_pose())
  return rest_pose[descendant] - rest_pose[j]


def joints_to_targets(joints: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Tracking targets from joint positions.

  Args:
    joints: (..., 22, 3) joint positions in metres (Y up).

  Returns:
    root_pos: (..., 3) pelvis position.
    root_quat: (..., 4) pelvis world rotation.
    local_quat: (..., NUM_BALLS, 4) rotation of each ball-jointed body relative to its parent.
  """
  glob = global_rotations(joints)
  body_slot = {j: i for i, j in enumerate(humanoid.BODY_JOINTS)}
  parent_slot = np.array([body_slot[skeleton.PARENTS[j]] for j in humanoid.BALL_JOINTS])
  child = glob[..., 1:, :, :]
  parent = glob[..., parent_slot, :, :]
  local = jnp.swapaxes(parent, -1, -2) @ child
  return joints[..., 0, :], rotations.matrix_to_quaternion(glob[..., 0, :, :]), rotations.matrix_to_quaternion(local)


def forward_kinematics(root_pos: jax.Array, root_quat: jax.Array,
                       local_quat: jax.Array) -> jax.Array:
  """Joint positions (..., 22, 3) of the humanoid's skeleton for a root and local rotations."""
  rest = jnp.asarray(skeleton.REST_OFFSETS)
  ball_slot = {j: i for i, j in enumerate(humanoid.BALL_JOINTS)}
  glob = {0: root_quat}
  pos = {0: root_pos}
  for j in range(1, skeleton.NUM_JOINTS):
    p = skeleton.PARENTS[j]
    pos[j] = pos[p] + rotations.qrot(glob[p], jnp.broadcast_to(rest[j], pos[p].shape))
    if j in ball_slot:
      glob[j] = rotations.qmul(glob[p], local_quat[..., ball_slot[j], :])
  return jnp.stack([pos[j] for j in range(skeleton.NUM_JOINTS)], axis=-2)
