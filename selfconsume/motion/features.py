"""HumanML3D's 263-dimensional motion features <-> joint positions, in jnp.

Per frame t (0 <= t < T-1, from joints of frames t and t+1), the feature vector is

  [0]        root angular velocity about Y: the y component of r_rot[t+1] r_rot[t]^-1, as
             arcsin (the half angle, radians)
  [1:3]      root linear velocity in XZ, expressed in the heading frame of frame t+1
  [3]        root height
  [4:67]     positions of joints 1..21 relative to the root's XZ, in the heading frame
  [67:193]   6-D local rotations of joints 1..21 (HumanML3D's inverse kinematics)
  [193:259]  velocities of all 22 joints (frame t -> t+1) in the heading frame of frame t
  [259:263]  foot contacts (left ankle, left toe, right ankle, right toe): 1 when that joint
             moves less than sqrt(0.002) m between frames t and t+1

exactly as HumanML3D's `process_file` computes them after its retargeting to the reference
skeleton (which is not done here: loaders never assume bone lengths). Joints are first
canonicalised (lowest joint on the floor y = 0, root XZ at the origin in frame 0, body facing
+Z in frame 0, from hips and shoulders). The heading r_rot[t] is the yaw that takes the
Gaussian-smoothed (sigma = 20 frames) facing direction of frame t to +Z, except in frame 0:
HumanML3D's `inverse_kinematics_np` overwrites the first frame's root quaternion with the
identity before anything uses it. So row 0's positions, rotations and joint velocities are
in the canonical frame, and its angular velocity is the half angle of r_rot[1] itself.

Two official behaviours are kept on purpose, because the real data carry them:
  * frame 0's identity heading (above);
  * the heading-sign artefact: r_rot has w >= 0, so where the smoothed heading crosses
    +-180 degrees r_rot[t+1] r_rot[t]^-1 comes out as -q and that one row's angular velocity
    has the wrong sign (the official new_joints then drift by twice that angle).
    `joints_to_features(..., heading_sign_fix=True)` takes the w >= 0 representative instead
    (it changes exactly those rows), for callers that want an exact round trip there.

`features_to_joints` is HumanML3D's `recover_from_ric`: it integrates the root and places the
root-relative positions. Because frame 0's heading is the identity on both sides, it returns
the motion in the canonical frame (`recoverable_frame` = `canonicalize`), and
`features_to_joints(..., with_last_frame=True)` also rebuilds the frame after the last row
from the joint velocities, so n feature rows give back all n + 1 frames: joints -> features
-> joints and features -> joints -> features are exact up to float32 rounding (wherever the
heading does not cross +-180 degrees, or with the sign fix).

Motions of different lengths share one compiled function: pass `length` (a traced int) with
joints padded to a fixed number of frames; feature rows at and after `length - 1` are 0. The
`*_list` helpers run lists of variable-length motions through fixed (128, 197)-frame batches.
One deliberate departure from HumanML3D's numpy code, only where it yields NaN: the shortest
arc between exactly opposite directions is a half turn instead of 0/0.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume.motion import rotations
from selfconsume.motion import skeleton
from selfconsume.motion.frames import frame_mask

FEATURE_DIM = 263
NUM_JOINTS = skeleton.NUM_JOINTS

# Slices of the 263-d vector.
ROOT_ROT_VEL = slice(0, 1)
ROOT_LIN_VEL = slice(1, 3)
ROOT_Y = slice(3, 4)
RIC = slice(4, 4 + (NUM_JOINTS - 1) * 3)                          # 4:67
ROT6D = slice(RIC.stop, RIC.stop + (NUM_JOINTS - 1) * 6)           # 67:193
LOCAL_VEL = slice(ROT6D.stop, ROT6D.stop + NUM_JOINTS * 3)         # 193:259
FOOT_CONTACT = slice(LOCAL_VEL.stop, LOCAL_VEL.stop + 4)           # 259:263
assert FOOT_CONTACT.stop == FEATURE_DIM

FEET_THRESHOLD = 0.002          # squared metres per frame (HumanML3D's feet_thre)
FORWARD_SMOOTHING_SIGMA = 20.0  # frames
_SMOOTHING_RADIUS = int(4.0 * FORWARD_SMOOTHING_SIGMA + 0.5)  # scipy's truncate=4.0

_UP = np.array([0.0, 1.0, 0.0], np.float32)
_FORWARD = np.array([0.0, 0.0, 1.0], np.float32)

# Joint indices HumanML3D uses for the facing direction, in the order (r_hip, l_hip, r_sh, l_sh).
_R_HIP, _L_HIP, _R_SHOULDER, _L_SHOULDER = skeleton.FACE_JOINTS


def _gaussian_weights() -> np.ndarray:
  x = np.arange(-_SMOOTHING_RADIUS, _SMOOTHING_RADIUS + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / FORWARD_SMOOTHING_SIGMA) ** 2)
  return (w / w.sum()).astype(np.float32)


def _normalize(v: jnp.ndarray) -> jnp.ndarray:
  return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-8)


def _valid_mask(num_frames: int, length) -> jnp.ndarray:
  if length is None:
    return jnp.ones((num_frames,), bool)
  return frame_mask(length, num_frames)


def _smooth_nearest(x: jnp.ndarray, length) -> jnp.ndarray:
  """scipy.ndimage.gaussian_filter1d(x, 20, axis=0, mode='nearest') over the first `length`
  frames of x (T, C) (edge frames repeated beyond both ends of the valid part)."""
  num_frames = x.shape[0]
  last = (num_frames if length is None else length) - 1
  offsets = jnp.arange(-_SMOOTHING_RADIUS, _SMOOTHING_RADIUS + 1)
  idx = jnp.clip(jnp.arange(num_frames)[:, None] + offsets[None, :], 0, last)
  return jnp.einsum("k,tkc->tc", jnp.asarray(_gaussian_weights()), x[idx])


def canonicalize(joints: jnp.ndarray, length=None) -> jnp.ndarray:
  """HumanML3D's canonical placement of a motion.

  Args:
    joints: (T, 22, 3) global joint positions (metres, Y up); frames >= length are ignored.
    length: number of valid frames (int or traced int scalar); None means all T.

  Returns:
    (T, 22, 3): lowest joint (over valid frames) at y = 0, root XZ of frame 0 at the origin,
    the frame-0 facing direction (from hips and shoulders) rotated onto +Z.
  """
  joints = jnp.asarray(joints, jnp.float32)
  valid = _valid_mask(joints.shape[0], length)
  floor = jnp.min(jnp.where(valid[:, None], joints[..., 1], jnp.inf))
  joints = joints - jnp.array([0.0, 1.0, 0.0]) * floor
  joints = joints - joints[0, 0] * jnp.array([1.0, 0.0, 1.0])
  first = joints[0]
  across = (first[_R_HIP] - first[_L_HIP]) + (first[_R_SHOULDER] - first[_L_SHOULDER])
  forward = _normalize(jnp.cross(_UP, _normalize(across)))
  q_init = rotations.qbetween(forward, jnp.asarray(_FORWARD))
  return rotations.qrot(q_init, joints)


def heading_rotations(canonical: jnp.ndarray, length=None) -> jnp.ndarray:
  """r_rot (T, 4): per frame, the yaw taking the smoothed facing direction onto +Z.

  This is the smoothed heading of every frame, frame 0 included; the features use it with
  frame 0 replaced by the identity (`feature_headings`).

  HumanML3D's inverse kinematics unpacks the face joints as (l_hip, r_hip, sdr_r, sdr_l), so
  its `across` is (hip_1 - hip_2) + (shoulder_17 - shoulder_16); we keep that quirk for
  exactness (the shoulders dominate, so the direction is still the body's facing).
  """
  across = ((canonical[:, _L_HIP] - canonical[:, _R_HIP])
            + (canonical[:, _R_SHOULDER] - canonical[:, _L_SHOULDER]))
  forward = jnp.cross(jnp.broadcast_to(_UP, across.shape), _normalize(across))
  forward = _normalize(_smooth_nearest(forward, length))
  return rotations.qbetween(forward, jnp.broadcast_to(_FORWARD, forward.shape))


def feature_headings(canonical: jnp.ndarray, length=None) -> jnp.ndarray:
  """The headings (T, 4) the features are computed with: `heading_rotations`, but the
  identity in frame 0, as HumanML3D's inverse_kinematics_np sets it (root_quat[0] = 1)."""
  r_rot = heading_rotations(canonical, length)
  return r_rot.at[0].set(jnp.array([1.0, 0.0, 0.0, 0.0], r_rot.dtype))


def _chain_structure() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """For joints 1..21: (child, parent, index of the rotation R the IK starts from).

  Along a chain HumanML3D starts R at the root heading and afterwards R equals the previous
  bone's shortest arc; the arm chains start at spine3 but still begin from the root heading.
  Index 0 stands for the root heading, k >= 1 for the arc of joint k.
  """
  child, parent, start = [], [], []
  for chain in skeleton.KINEMATIC_CHAINS:
    for k, (a, b) in enumerate(zip(chain[:-1], chain[1:])):
      child.append(b)
      parent.append(a)
      start.append(0 if k == 0 else a)
  order = np.argsort(child)
  return tuple(np.asarray(x)[order] for x in (child, parent, start))


_IK_CHILD, _IK_PARENT, _IK_START = _chain_structure()


def local_rotations(canonical: jnp.ndarray, r_rot: jnp.ndarray) -> jnp.ndarray:
  """HumanML3D's inverse kinematics: local joint quaternions (T, 22, 4); joint 0 = r_rot.

  Along each kinematic chain, R starts at the root heading; a joint's local rotation is
  R^-1 * (shortest arc from its raw rest direction to its current bone direction), and R
  becomes R * local = that arc. All joints are computed at once from that closed form.
  """
  bones = _normalize(canonical[:, _IK_CHILD] - canonical[:, _IK_PARENT])       # (T, 21, 3)
  rest = jnp.broadcast_to(jnp.asarray(skeleton.RAW_OFFSETS[_IK_CHILD]), bones.shape)
  arcs = rotations.qbetween(rest, bones)                                          # (T, 21, 4)
  rots = jnp.concatenate([r_rot[:, None], arcs], axis=1)   # index 0 = heading, j = arc of j
  local = rotations.qmul(rotations.qinv(rots[:, _IK_START]), arcs)
  return jnp.concatenate([r_rot[:, None], local], axis=1)


@functools.partial(jax.jit, static_argnames=("feet_threshold", "heading_sign_fix"))
def joints_to_features(joints: jnp.ndarray, length=None, *,
                       feet_threshold: float = FEET_THRESHOLD,
                       heading_sign_fix: bool = False) -> jnp.ndarray:
  """HumanML3D features of one motion, as the official process_file computes them. Jitted.

  Args:
    joints: (T, 22, 3) global joint positions in metres, Y up, any placement.
    length: number of valid frames (python int or traced int32 scalar); None = T.
      Frames >= length may hold anything (e.g. zero padding).
    feet_threshold: squared displacement per frame below which a foot joint is in contact.
    heading_sign_fix: keep the angular velocity's sign where the smoothed heading crosses
      +-180 degrees (HumanML3D flips it for that one row; see the module docstring). Off by
      default: the official pipeline, and so the real data, have the flip.

  Returns:
    (T-1, 263) float32 features; rows >= length - 1 are zero.
  """
  joints = jnp.asarray(joints, jnp.float32)
  num_frames = joints.shape[0]
  positions = canonicalize(joints, length)

  foot_step = positions[1:, jnp.array(skeleton.FOOT_JOINTS)] - positions[:-1, jnp.array(
      skeleton.FOOT_JOINTS)]
  contacts = (jnp.sum(foot_step ** 2, axis=-1) < feet_threshold).astype(jnp.float32)

  r_rot = feature_headings(positions, length)
  cont6d = rotations.quaternion_to_cont6d(local_rotations(positions, r_rot))

  root_step = positions[1:, 0] - positions[:-1, 0]
  lin_vel = rotations.qrot(r_rot[1:], root_step)[:, jnp.array([0, 2])]
  rot_vel = rotations.qmul(r_rot[1:], rotations.qinv(r_rot[:-1]))
  if heading_sign_fix:
    # r_rot has w >= 0, so across +-180 degrees the relative quaternion comes out as -q;
    # the w >= 0 representative changes exactly those rows.
    rot_vel = jnp.where(rot_vel[:, :1] < 0, -rot_vel, rot_vel)
  rot_vel = jnp.arcsin(jnp.clip(rot_vel[:, 2:3], -1.0, 1.0))

  root_xz = positions[:, :1] * jnp.array([1.0, 0.0, 1.0])
  ric = rotations.qrot(r_rot[:, None], positions - root_xz)
  root_y = ric[:-1, 0, 1:2]

  local_vel = rotations.qrot(r_rot[:-1, None], positions[1:] - positions[:-1])

  features = jnp.concatenate([
      rot_vel, lin_vel, root_y,
      ric[:-1, 1:].reshape(num_frames - 1, -1),
      cont6d[:-1, 1:].reshape(num_frames - 1, -1),
      local_vel.reshape(num_frames - 1, -1),
      contacts,
  ], axis=-1)
  if length is not None:
    features = jnp.where(_valid_mask(num_frames - 1, length - 1)[:, None], features, 0.0)
  return features


def recoverable_frame(joints: jnp.ndarray, length=None) -> jnp.ndarray:
  """The joints (T, 22, 3) as `features_to_joints(joints_to_features(joints))` returns them.

  That is the canonical frame (`canonicalize`): features_to_joints starts its heading
  integration at the identity, and the features' frame-0 heading is the identity too. (Where
  the smoothed heading crosses +-180 degrees the official sign flip makes the recovered
  motion drift from this by twice that row's angle; `heading_sign_fix=True` avoids it.)
  """
  return canonicalize(joints, length)


def recover_root(features: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Integrates root heading and position (HumanML3D's recover_root_rot_pos).

  Args:
    features: (..., T, 263).

  Returns:
    r_rot (..., T, 4) heading quaternions (frame 0 = identity) and root positions (..., T, 3).
  """
  rot_vel = features[..., 0]
  angle = jnp.cumsum(jnp.concatenate(
      [jnp.zeros_like(rot_vel[..., :1]), rot_vel[..., :-1]], axis=-1), axis=-1)
  zero = jnp.zeros_like(angle)
  r_rot = jnp.stack([jnp.cos(angle), zero, jnp.sin(angle), zero], axis=-1)
  step_xz = features[..., :-1, 1:3]
  step = jnp.stack([step_xz[..., 0], jnp.zeros_like(step_xz[..., 0]), step_xz[..., 1]], -1)
  step = jnp.concatenate([jnp.zeros_like(step[..., :1, :]), step], axis=-2)
  step = rotations.qrot(rotations.qinv(r_rot), step)
  root = jnp.cumsum(step, axis=-2)
  root = root.at[..., 1].set(features[..., 3])
  return r_rot, root


@functools.partial(jax.jit, static_argnames=("with_last_frame",))
def features_to_joints(features: jnp.ndarray, lengths=None, *,
                       with_last_frame: bool = False) -> jnp.ndarray:
  """Joint positions from features (HumanML3D's recover_from_ric). Jitted.

  Args:
    features: (..., T, 263) raw (not normalised) features.
    lengths: optional (...,) int number of valid feature rows; frames after the recovered
      ones are then zero.
    with_last_frame: also reconstruct the frame after the last valid feature row from the
      joint velocities, so that n feature rows give back the n + 1 frames they came from.

  Returns:
    (..., T, 22, 3) joints, or (..., T + 1, 22, 3) with `with_last_frame`.
  """
  features = jnp.asarray(features, jnp.float32)
  num_rows = features.shape[-2]
  r_rot, root = recover_root(features)
  ric = features[..., RIC].reshape(features.shape[:-1] + (NUM_JOINTS - 1, 3))
  ric = rotations.qrot(rotations.qinv(r_rot)[..., None, :], ric)
  ric = ric + (root * jnp.array([1.0, 0.0, 1.0]))[..., None, :]
  joints = jnp.concatenate([root[..., None, :], ric], axis=-2)
  if lengths is None:
    num_valid = jnp.full(features.shape[:-2], num_rows, jnp.int32)
  else:
    num_valid = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, num_rows)
  last = jnp.maximum(num_valid - 1, 0)   # the last valid row (0 when there is none)
  valid_frames = num_valid
  if with_last_frame:
    def row(x):  # x (..., T, *rest) -> x[..., last, *rest]
      idx = last.reshape(last.shape + (1,) * (x.ndim - last.ndim))
      return jnp.squeeze(jnp.take_along_axis(x, idx, axis=last.ndim), axis=last.ndim)
    vel = row(features[..., LOCAL_VEL]).reshape(features.shape[:-2] + (NUM_JOINTS, 3))
    vel = rotations.qrot(rotations.qinv(row(r_rot))[..., None, :], vel)
    extra = row(joints) + vel
    joints = jnp.concatenate([joints, jnp.zeros_like(joints[..., :1, :, :])], axis=-3)
    frame = jnp.arange(num_rows + 1).reshape((1,) * last.ndim + (num_rows + 1,))
    at_extra = (frame == (last + 1)[..., None])[..., None, None]
    joints = jnp.where(at_extra, extra[..., None, :, :], joints)
    valid_frames = jnp.where(num_valid > 0, num_valid + 1, 0)
  if lengths is not None:
    frame = jnp.arange(joints.shape[-3]).reshape((1,) * last.ndim + (joints.shape[-3],))
    joints = jnp.where((frame < valid_frames[..., None])[..., None, None], joints, 0.0)
  return joints


@functools.partial(jax.jit, static_argnames=("heading_sign_fix",))
def batch_joints_to_features(joints: jnp.ndarray, lengths: jnp.ndarray, *,
                             heading_sign_fix: bool = False) -> jnp.ndarray:
  """joints_to_features over a batch: joints (B, T, 22, 3), lengths (B,) -> (B, T-1, 263)."""
  fn = functools.partial(joints_to_features, heading_sign_fix=heading_sign_fix)
  return jax.vmap(fn)(joints, lengths)


def batch_features_to_joints(features: jnp.ndarray, lengths=None, *,
                             with_last_frame: bool = False) -> jnp.ndarray:
  """Alias of features_to_joints (already batched over leading axes and jitted)."""
  return features_to_joints(features, lengths, with_last_frame=with_last_frame)


@jax.jit
def batch_recoverable_frame(joints: jnp.ndarray, lengths: jnp.ndarray) -> jnp.ndarray:
  """recoverable_frame over a batch: joints (B, T, 22, 3), lengths (B,) -> (B, T, 22, 3)."""
  return jax.vmap(recoverable_frame)(joints, lengths)


# Lists of variable-length motions, run through one fixed-shape compiled function each.
LIST_BATCH = 128
LIST_JOINT_FRAMES = skeleton.MAX_FRAMES + 1   # T joint frames <-> T - 1 feature rows


def _map_padded(fn, arrays: Sequence[np.ndarray], frames: int) -> list[np.ndarray]:
  """Applies fn(padded (LIST_BATCH, frames, ...), lengths (LIST_BATCH,)) chunk by chunk and
  cuts each result back to its own length (rows >= length are dropped)."""
  out = []
  for i in range(0, len(arrays), LIST_BATCH):
    chunk = [np.asarray(a, np.float32) for a in arrays[i:i + LIST_BATCH]]
    batch = np.zeros((LIST_BATCH, frames) + chunk[0].shape[1:], np.float32)
    lengths = np.full((LIST_BATCH,), frames, np.int32)
    for k, a in enumerate(chunk):
      if len(a) > frames:
        raise ValueError(f"motion {i + k} has {len(a)} frames, more than {frames}")
      batch[k, :len(a)] = a
      batch[k, len(a):] = a[-1]   # repeat the last frame: keeps padding finite and harmless
      lengths[k] = len(a)
    result = np.asarray(fn(jnp.asarray(batch), jnp.asarray(lengths)))
    out.extend((result[k], int(lengths[k])) for k in range(len(chunk)))
  return out


def joints_to_features_list(joints: Sequence[np.ndarray], *, heading_sign_fix: bool = False
                            ) -> list[np.ndarray]:
  """Features (T_i - 1, 263) of each motion (T_i, 22, 3), T_i <= 197."""
  fn = functools.partial(batch_joints_to_features, heading_sign_fix=heading_sign_fix)
  results = _map_padded(fn, joints, LIST_JOINT_FRAMES)
  return [r[:n - 1] for r, n in results]


def features_to_joints_list(features: Sequence[np.ndarray], *, with_last_frame: bool = False
                            ) -> list[np.ndarray]:
  """Joints (T_i [+ 1], 22, 3) of each feature sequence (T_i, 263), T_i <= 196."""
  fn = functools.partial(features_to_joints, with_last_frame=with_last_frame)
  results = _map_padded(fn, features, LIST_JOINT_FRAMES - 1)
  return [r[:n + int(with_last_frame)] for r, n in results]


def recoverable_frame_list(joints: Sequence[np.ndarray]) -> list[np.ndarray]:
  """recoverable_frame of each motion (T_i, 22, 3), T_i <= 197."""
  results = _map_padded(batch_recoverable_frame, joints, LIST_JOINT_FRAMES)
  return [r[:n] for r, n in results]
