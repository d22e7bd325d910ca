"""Rotation math in jnp: unit quaternions (w, x, y, z), rotation matrices and the 6-D form.

Conventions follow HumanML3D: `qrot(q, v)` rotates the vector v by q, `qmul(a, b)` applies b
first and then a, and the continuous 6-D representation of a rotation is the first two
*columns* of its matrix, concatenated: (m00, m10, m20, m01, m11, m21).
All functions broadcast over leading axes and are jit/vmap friendly.
"""

from __future__ import annotations

import jax.numpy as jnp

_EPS = 1e-8


def qnormalize(q: jnp.ndarray) -> jnp.ndarray:
  """Unit quaternion(s) (..., 4)."""
  return q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), _EPS)


def qinv(q: jnp.ndarray) -> jnp.ndarray:
  """Conjugate (= inverse of a unit quaternion), (..., 4)."""
  return q * jnp.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def qmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Hamilton product a * b of quaternions (..., 4); the rotation b is applied first."""
  aw, ax, ay, az = jnp.moveaxis(a, -1, 0)
  bw, bx, by, bz = jnp.moveaxis(b, -1, 0)
  return jnp.stack([
      aw * bw - ax * bx - ay * by - az * bz,
      aw * bx + ax * bw + ay * bz - az * by,
      aw * by - ax * bz + ay * bw + az * bx,
      aw * bz + ax * by - ay * bx + az * bw,
  ], axis=-1)


def qrot(q: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
  """Rotates vectors v (..., 3) by unit quaternions q (..., 4) (broadcast)."""
  q = jnp.broadcast_to(q, jnp.broadcast_shapes(q.shape, v.shape[:-1] + (4,)))
  v = jnp.broadcast_to(v, q.shape[:-1] + (3,))
  w = q[..., :1]
  u = q[..., 1:]
  uv = jnp.cross(u, v)
  uuv = jnp.cross(u, uv)
  return v + 2.0 * (w * uv + uuv)


def qbetween(v0: jnp.ndarray, v1: jnp.ndarray) -> jnp.ndarray:
  """The shortest-arc quaternion (..., 4) that rotates direction v0 (..., 3) onto v1.

  HumanML3D's formula, w = |v0||v1| + v0.v1, xyz = v0 x v1, normalised. For exactly opposite
  directions that formula is 0/0; there we return the half turn about an axis orthogonal to v0
  (about +-Y when v0 is horizontal, which is the case for facing directions).
  """
  v0, v1 = jnp.broadcast_arrays(v0, v1)
  xyz = jnp.cross(v0, v1)
  scale = jnp.sqrt(jnp.sum(v0 * v0, -1, keepdims=True) * jnp.sum(v1 * v1, -1, keepdims=True))
  w = scale + jnp.sum(v0 * v1, -1, keepdims=True)
  q = jnp.concatenate([w, xyz], axis=-1)
  norm = jnp.linalg.norm(q, axis=-1, keepdims=True)
  degenerate = norm <= 1e-6 * jnp.maximum(scale, _EPS)
  # Half-turn axis: the part of +Y orthogonal to v0 (exactly +Y for a horizontal v0, as for
  # facing directions); for a (nearly) vertical v0 the part of +X orthogonal to it.
  v0n = v0 / jnp.maximum(jnp.linalg.norm(v0, axis=-1, keepdims=True), _EPS)
  e_y = jnp.array([0.0, 1.0, 0.0], v0.dtype)
  e_x = jnp.array([1.0, 0.0, 0.0], v0.dtype)
  ref = jnp.where(jnp.abs(v0n[..., 1:2]) > 0.9, e_x, e_y)
  axis = ref - jnp.sum(ref * v0n, -1, keepdims=True) * v0n
  axis = axis / jnp.maximum(jnp.linalg.norm(axis, axis=-1, keepdims=True), _EPS)
  half_turn = jnp.concatenate([jnp.zeros_like(w), axis], axis=-1)
  safe = q / jnp.where(degenerate, 1.0, norm)
  return jnp.where(degenerate, half_turn, safe)


def yaw_quaternion(angle: jnp.ndarray) -> jnp.ndarray:
  """Rotation by `angle` radians about +Y, (..., 4)."""
  half = 0.5 * angle
  zero = jnp.zeros_like(half)
  return jnp.stack([jnp.cos(half), zero, jnp.sin(half), zero], axis=-1)


def axis_angle_to_quaternion(axis_angle: jnp.ndarray) -> jnp.ndarray:
  """Axis-angle vectors (..., 3) (direction = axis, norm = angle) to quaternions (..., 4)."""
  angle = jnp.linalg.norm(axis_angle, axis=-1, keepdims=True)
  axis = axis_angle / jnp.maximum(angle, _EPS)
  return jnp.concatenate([jnp.cos(0.5 * angle), jnp.sin(0.5 * angle) * axis], axis=-1)


def quaternion_to_axis_angle(q: jnp.ndarray) -> jnp.ndarray:
  """Unit quaternions (..., 4) to axis-angle vectors (..., 3), taking the short way round."""
  q = jnp.where(q[..., :1] < 0, -q, q)
  xyz = q[..., 1:]
  s = jnp.sqrt(jnp.sum(xyz * xyz, axis=-1, keepdims=True) + _EPS**2)
  angle = 2.0 * jnp.arctan2(s, q[..., :1])
  return xyz * (angle / s)


def quaternion_to_matrix(q: jnp.ndarray) -> jnp.ndarray:
  """Quaternions (..., 4) to rotation matrices (..., 3, 3) acting on column vectors."""
  w, x, y, z = jnp.moveaxis(q, -1, 0)
  two_s = 2.0 / jnp.sum(q * q, axis=-1)
  m = jnp.stack([
      1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
      two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
      two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
  ], axis=-1)
  return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(m: jnp.ndarray) -> jnp.ndarray:
  """Rotation matrices (..., 3, 3) to unit quaternions (..., 4) with w >= 0.

  Uses the largest of the four candidate denominators so every branch stays well conditioned.
  """
  m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  trace = m00 + m11 + m22
  candidates = jnp.stack([
      jnp.stack([1 + trace, m21 - m12, m02 - m20, m10 - m01], -1),
      jnp.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
      jnp.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
      jnp.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
  ], axis=-2)
  diag = jnp.stack([1 + trace, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                    1 - m00 - m11 + m22], -1)
  best = jnp.argmax(diag, axis=-1)
  q = jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
  q = qnormalize(q)
  return q * jnp.where(q[..., :1] < 0, -1.0, 1.0)


def matrix_to_cont6d(m: jnp.ndarray) -> jnp.ndarray:
  """Rotation matrices (..., 3, 3) to the 6-D form (..., 6): first two columns."""
  return jnp.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def quaternion_to_cont6d(q: jnp.ndarray) -> jnp.ndarray:
  """Quaternions (..., 4) to the 6-D form (..., 6)."""
  return matrix_to_cont6d(quaternion_to_matrix(q))


def cont6d_to_matrix(d6: jnp.ndarray) -> jnp.ndarray:
  """6-D form (..., 6) to rotation matrices (..., 3, 3) by Gram-Schmidt (Zhou et al. 2019).

  Columns: x = normalise(a), z = normalise(x cross b), y = z cross x, as in HumanML3D.
  """
  a, b = d6[..., :3], d6[..., 3:]
  x = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), _EPS)
  z = jnp.cross(x, b)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), _EPS)
  y = jnp.cross(z, x)
  return jnp.stack([x, y, z], axis=-1)


def cont6d_to_quaternion(d6: jnp.ndarray) -> jnp.ndarray:
  """6-D form (..., 6) to unit quaternions (..., 4)."""
  return matrix_to_quaternion(cont6d_to_matrix(d6))
