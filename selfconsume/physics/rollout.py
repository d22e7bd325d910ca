"""The PD-tracking rollout: the humanoid follows a motion's targets in MuJoCo XLA.

Per motion frame the simulator takes `substeps` steps; each step applies, as generalized
forces, (a) PD torques on every ball joint toward the target local rotation (interpolated
inside the frame at the target's angular velocity), plus the model's bias forces (gravity
compensation), and (b) a bounded residual force and torque on the free root toward the
target root trajectory (residual force control). The vertical residual force is bounded
below body weight, so the body's weight must rest on the floor: it cannot float, and the
floor's contacts keep it from sinking; feet in contact are held by friction, so they cannot
skate unless the residual force pulls harder than friction allows.

Fail-safe (as in the paper's imitation controller): at the start of every frame the mean
per-joint distance between the simulated joints and the reference joints of that frame is
compared with `Control.failsafe_threshold`; above it, the imitation has failed (fallen, or
left behind by a reference it cannot follow) and the simulated state is reset to the
reference state of that frame (the pose and velocities the targets hold, as for the first
frame) and the rollout goes on. It is a `jnp.where` per motion inside the scan: fixed shapes,
no host round trip; a threshold of inf (failsafe='none') never resets.

Everything is a pure jnp function of one motion; `make_rollout` vmaps it over the batch
and jit-compiles it once per (static settings, batch, frames): gains and force bounds are
runtime inputs (`Control`), so changing them does not recompile.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from mujoco import mjx

from selfconsume.motion import rotations
from selfconsume.physics import humanoid
from selfconsume.physics import retarget
from selfconsume.physics.params import CorrectorParams

GRAVITY = 9.81
MAX_OMEGA_DT = 0.6


class Targets(NamedTuple):
  """Tracking targets of one motion (add a leading batch axis for batches).

  root_pos: (F, 3); root_quat: (F, 4); local_quat: (F, NUM_BALLS, 4) (see `retarget`).
  """
  root_pos: jax.Array
  root_quat: jax.Array
  local_quat: jax.Array


class Control(NamedTuple):
  """Controller settings passed to the compiled rollout as arrays (changing them does not
  recompile). kp, kd, compensate: (NUM_BALLS, 3); the rest are scalars."""
  kp: jax.Array
  kd: jax.Array
  compensate: jax.Array
  root_frequency: jax.Array
  max_force_xz: jax.Array
  max_force_y: jax.Array
  max_torque: jax.Array
  failsafe_threshold: jax.Array  # metres of mean joint error; inf = no fail-safe


class Rollout(NamedTuple):
  """What a rollout records per frame (leading batch axis when vmapped).

  joints: (F, 22, 3) simulated joint positions at each frame's time (after the fail-safe:
    the reference pose on a frame where it reset the state).
  local_quat: (F, NUM_BALLS, 4) simulated local rotations (for refinement), same time.
  residual: (F,) residual root force magnitude / body weight.
  reset: (F,) bool, the fail-safe reset the state to the reference on this frame.
  pelvis_height: (F,) simulated pelvis height (m) before the fail-safe acted (how low the
    body went, which the returned joints no longer show where it was reset).
  error: (F,) mean joint distance (m) of the simulated to the reference pose before the
    fail-safe acted (above the threshold on exactly the frames it reset).
  """
  joints: jax.Array
  local_quat: jax.Array
  residual: jax.Array
  reset: jax.Array
  pelvis_height: jax.Array
  error: jax.Array


def targets_from_joints(joints: jax.Array) -> Targets:
  """Targets (leading axes kept) from joint positions (..., F, 22, 3)."""
  return Targets(*retarget.joints_to_targets(joints))


def _angular_velocity(quat: jax.Array, dt: float) -> jax.Array:
  """Body-frame angular velocity (F, ..., 3) taking each frame to the next; 0 at the end."""
  delta = rotations.quaternion_to_axis_angle(rotations.qmul(rotations.qinv(quat[:-1]), quat[1:]))
  return jnp.concatenate([delta / dt, jnp.zeros_like(delta[:1])], axis=0)


def _rotation_with_gradient(v: jax.Array) -> jax.Array:
  """Quaternions (..., 4) of rotation vectors (..., 3) with finite gradients at v = 0 (the
  norm's gradient there is NaN; the offsets being optimised start at 0)."""
  angle = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)
  return jnp.concatenate([jnp.cos(0.5 * angle), jnp.sin(0.5 * angle) / angle * v], axis=-1)


def _clip_norm(v: jax.Array, bound: float) -> jax.Array:
  norm = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)
  return v * jnp.minimum(1.0, bound / norm)


def gains(params: CorrectorParams, index: humanoid.ModelIndex) -> tuple[np.ndarray, np.ndarray]:
  """PD gains (kp, kd), each (NUM_BALLS, 3), per ball dof.

  Stiffness is capped so that no dof's natural frequency exceeds MAX_OMEGA_DT / timestep
  (the explicit spring stays stable); damping is critical-relative for each dof's inertia and
  is integrated implicitly by the simulator (set as the model's dof damping).
  """
  inertia = index.dof_inertia
  timestep = params.frame_dt / params.substeps
  kp = np.minimum(params.stiffness * index.kp[:, None],
                  (MAX_OMEGA_DT / timestep) ** 2 * inertia)
  kd = 2.0 * params.damping_ratio * np.sqrt(kp * inertia)
  return kp.astype(np.float32), kd.astype(np.float32)


# Joints whose bias forces are compensated: not the legs, which carry the body in stance
# (compensating a stance leg's own weight would push its foot off the floor).
_UNCOMPENSATED = (1, 2, 4, 5, 7, 8)


def make_control(params: CorrectorParams) -> Control:
  """The rollout's Control from corrector settings (failsafe='none' is an infinite
  threshold, so both settings share one compiled rollout)."""
  index = humanoid.model_index(params.spec)
  kp, kd = gains(params, index)
  comp = np.array([[0.0 if j in _UNCOMPENSATED else 1.0] * 3 for j in humanoid.BALL_JOINTS],
                  np.float32) * float(params.gravity_compensation)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Control(kp=f32(kp), kd=f32(kd), compensate=f32(comp),
                 root_frequency=f32(params.root_frequency),
                 max_force_xz=f32(params.max_root_force_xz),
                 max_force_y=f32(params.max_root_force_y),
                 max_torque=f32(params.max_root_torque),
                 failsafe_threshold=f32(params.failsafe_threshold_m
                                        if params.failsafe == "reset" else np.inf))


class Frames(NamedTuple):
  """Per-frame controller inputs of one motion, (F, ...) each (see `prepare`)."""
  local_target: jax.Array  # (F, NUM_BALLS, 4) PD target local rotations
  local_vel: jax.Array     # (F, NUM_BALLS, 3) their body-frame angular velocity
  root_pos: jax.Array      # (F, 3)
  root_vel: jax.Array      # (F, 3)
  root_quat: jax.Array     # (F, 4)
  root_ang: jax.Array      # (F, 3) body-frame angular velocity of the root
  reference_local: jax.Array      # (F, NUM_BALLS, 4) the reference's local rotations
  reference_local_vel: jax.Array  # (F, NUM_BALLS, 3) (without refinement offsets)


def prepare(targets: Targets, offsets: jax.Array | None, dt: float) -> Frames:
  """Controller inputs from targets; `offsets` (F, NUM_BALLS, 3) rotation vectors are
  composed onto the target local rotations (and so also change their velocities)."""
  reference_vel = _angular_velocity(targets.local_quat, dt)
  local_target, local_vel = targets.local_quat, reference_vel
  if offsets is not None:
    local_target = rotations.qmul(local_target, rotations.axis_angle_to_quaternion(offsets))
    local_vel = _angular_velocity(local_target, dt)
  root_vel = jnp.concatenate(
      [(targets.root_pos[1:] - targets.root_pos[:-1]) / dt, jnp.zeros((1, 3))], axis=0)
  return Frames(local_target=local_target, local_vel=local_vel,
                root_pos=targets.root_pos, root_vel=root_vel, root_quat=targets.root_quat,
                root_ang=_angular_velocity(targets.root_quat, dt),
                reference_local=targets.local_quat, reference_local_vel=reference_vel)


def controlled_system(system, control: Control, index: humanoid.ModelIndex):
  """The system with the PD damping as the ball dofs' damping, which the Euler integrator
  treats implicitly (stable at high gains)."""
  ball_dof_flat = index.ball_dof.reshape(-1)
  return system.replace(dof_damping=jnp.zeros(system.nv, jnp.float32).at[ball_dof_flat].set(
      control.kd.reshape(-1)))


def reference_state(system, index: humanoid.ModelIndex, frame: Frames
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The reference state of one frame (`frame`: a Frames of one frame, no F axis): the
  reference pose, raised out of the floor if it is inside it, with the reference's
  velocities (root linear and angular, joints' angular).

  Returns:
    qpos (nq,), qvel (nv,) and the pose's joint positions (22, 3).
  """
  ball_qpos = jnp.asarray(index.ball_qpos).reshape(-1)
  ball_dof = jnp.asarray(index.ball_dof).reshape(-1)
  joints = retarget.forward_kinematics(frame.root_pos, frame.root_quat, frame.reference_local)
  lift = jnp.array([0.0, 1.0, 0.0]) * jnp.maximum(0.0, -jnp.min(joints[:, 1]))
  qpos = jnp.zeros(system.nq).at[0:3].set(frame.root_pos + lift)
  qpos = qpos.at[3:7].set(frame.root_quat).at[ball_qpos].set(frame.reference_local.reshape(-1))
  qvel = jnp.zeros(system.nv).at[0:3].set(frame.root_vel).at[3:6].set(frame.root_ang)
  qvel = qvel.at[ball_dof].set(frame.reference_local_vel.reshape(-1))
  return qpos, qvel, joints + lift


def initial_data(system, index: humanoid.ModelIndex, frames: Frames) -> mjx.Data:
  """Simulator state on the first reference pose (raised out of the floor if it starts
  inside it) with the reference's first velocities.

  mjx.step recomputes everything from qpos and qvel; the one derived quantity read before the
  first step is the bias force the controller compensates (qfrc_bias). The smooth dynamics
  that give it (kinematics, composite inertia and velocities, RNE) leave out mjx.forward's
  collision and constraint solve: the same rollout, bit for bit, and less to compile.
  """
  qpos, qvel, _ = reference_state(system, index, jax.tree.map(lambda x: x[0], frames))
  data = mjx.make_data(system).replace(qpos=qpos, qvel=qvel)
  for stage in (mjx.kinematics, mjx.com_pos, mjx.com_vel, mjx.rne):
    data = stage(system, data)
  return data


def varying_with(tree, like: jax.Array):
  """`tree`, its values unchanged, each leaf made to depend on `like`.

  For tracing under vmap: the leaves of a fresh mjx.Data that no input sets (the zeros of
  contacts, warm starts, actuators) or of a fresh optimiser state are then batched like
  `like`. JAX batches a scan whose initial carry has unbatched leaves that its body makes
  batched once more for every such promotion, and each pass re-batches the scans nested in
  the body: carried batched from the start, the body is batched once. Tracing the gradient-
  refined rollout (windows > Adam steps > frames > substeps) then batches 162k primitives
  instead of 329k and records 315k equations instead of 492k (83 s -> 53 s on a 2-core CPU),
  for the same program (HLO within 0.1%). The plain rollout (frames > substeps) batches as
  many primitives either way (43k), so it is left as it is.
  """
  always = jnp.logical_or(jnp.isnan(jnp.ravel(like)[0]), True)
  return jax.tree.map(lambda x: jnp.where(always, x, x), tree)


def state_joints(data: mjx.Data, index: humanoid.ModelIndex) -> jax.Array:
  """(22, 3) joint positions of a simulator state."""
  return retarget.forward_kinematics(data.qpos[0:3], data.qpos[3:7],
                                     data.qpos[jnp.asarray(index.ball_qpos)])


def run_frames(system, params: CorrectorParams, control: Control, data: mjx.Data,
               frames: Frames, pd_offsets: jax.Array | None = None,
               recompute_substeps: bool = False) -> tuple[mjx.Data, Rollout]:
  """Simulates the frames of `frames` from `data` (the system from `controlled_system`).

  Args:
    pd_offsets: optional (F, NUM_BALLS, 3) rotation vectors composed onto each frame's PD
      target only (its velocity is kept): what gradient refinement optimises.
    recompute_substeps: for reverse-mode differentiation: each substep is a
      `jax.checkpoint`, so the reverse pass recomputes it from its carry instead of storing
      every intermediate of mjx.step (same gradients, far fewer stored residuals: gradient
      refinement's program traces and compiles faster). No effect without differentiation.

  Returns:
    the state after the last frame and the Rollout (joints at each frame's start, after the
    fail-safe; see the module docstring).
  """
  index = humanoid.model_index(params.spec)
  dt = params.frame_dt
  substeps = params.substeps
  kp, kd = control.kp, control.kd
  ball_qpos = jnp.asarray(index.ball_qpos)
  ball_dof = jnp.asarray(index.ball_dof).reshape(-1)
  mass = index.total_mass
  weight = mass * GRAVITY
  root_rot_inertia = mass * 0.15  # ~ m r^2 of the body about the pelvis, r ~ 0.4 m
  wr = control.root_frequency

  def substep(carry, s, frame):
    data = carry
    q_tgt, w_tgt, p_tgt, v_tgt, r_tgt, rw_tgt = frame[:6]
    tau_frac = s * dt
    # Joint PD toward the target interpolated at the target's angular velocity; the
    # -kd * w part is the model's implicit dof damping.
    q = data.qpos[ball_qpos]
    q_now = rotations.qmul(q_tgt, rotations.axis_angle_to_quaternion(w_tgt * tau_frac))
    if pd_offsets is not None:
      q_now = rotations.qmul(q_now, _rotation_with_gradient(frame[6]))
    err = rotations.quaternion_to_axis_angle(rotations.qmul(rotations.qinv(q), q_now))
    tau = kp * err + kd * w_tgt
    tau = tau + control.compensate * data.qfrc_bias[ball_dof].reshape(-1, 3)
    # Residual root force (world frame) and torque (body frame), bounded.
    p_now = p_tgt + v_tgt * tau_frac
    force = mass * (wr * wr * (p_now - data.qpos[0:3]) + 2.0 * wr * (v_tgt - data.qvel[0:3]))
    force_xz = _clip_norm(force[jnp.array([0, 2])], control.max_force_xz * weight)
    force_y = jnp.clip(force[1], -control.max_force_y * weight, control.max_force_y * weight)
    force = jnp.stack([force_xz[0], force_y, force_xz[1]])
    r_now = rotations.qmul(r_tgt, rotations.axis_angle_to_quaternion(rw_tgt * tau_frac))
    r_err = rotations.quaternion_to_axis_angle(rotations.qmul(rotations.qinv(data.qpos[3:7]), r_now))
    torque = root_rot_inertia * (wr * wr * r_err + 2.0 * wr * (rw_tgt - data.qvel[3:6]))
    torque = _clip_norm(torque, control.max_torque)
    applied = jnp.zeros(system.nv).at[ball_dof].set(tau.reshape(-1))
    applied = applied.at[0:3].set(force).at[3:6].set(torque)
    data = mjx.step(system, data.replace(qfrc_applied=applied))
    return data, jnp.sqrt(jnp.sum(force * force)) / weight

  def failsafe(data, reference):
    """Resets `data` to this frame's reference state where the imitation has failed.

    Returns the state, the joints (22, 3) it holds, reset, and the pelvis height and the
    mean joint error before the reset."""
    joints = state_joints(data, index)
    ref_qpos, ref_qvel, ref_joints = reference_state(system, index, reference)
    error = jnp.mean(jnp.sqrt(jnp.sum((joints - ref_joints) ** 2, axis=-1)))
    reset = error > control.failsafe_threshold  # False for NaN: that is reported as nonfinite
    # mjx.step recomputes everything from qpos and qvel, so no forward pass is needed (one
    # per frame would cost ~10% under vmap, where it runs whether or not a motion resets).
    # Only the bias forces the controller compensates would be stale for the first substep:
    # they are zeroed instead; the solver's warm start belonged to the old state too.
    pick = lambda new, old: jnp.where(reset, new, old)
    data = data.replace(qpos=pick(ref_qpos, data.qpos), qvel=pick(ref_qvel, data.qvel),
                        qacc_warmstart=pick(0.0, data.qacc_warmstart),
                        qfrc_bias=pick(0.0, data.qfrc_bias))
    return data, pick(ref_joints, joints), reset, joints[0, 1], error

  def frame_step(data, inputs):
    frame, reference = inputs
    data, joints, reset, pelvis, error = failsafe(data, reference)
    local = data.qpos[ball_qpos]
    fractions = jnp.arange(substeps, dtype=jnp.float32) / substeps
    step = lambda d, s: substep(d, s, frame)
    if recompute_substeps:
      step = jax.checkpoint(step)
    data, residual = jax.lax.scan(step, data, fractions)
    return data, Rollout(joints=joints, local_quat=local, residual=jnp.mean(residual),
                         reset=reset, pelvis_height=pelvis, error=error)

  xs = (frames.local_target, frames.local_vel, frames.root_pos, frames.root_vel,
        frames.root_quat, frames.root_ang)
  if pd_offsets is not None:
    xs = xs + (pd_offsets,)
  return jax.lax.scan(frame_step, data, (xs, frames))


def track_one(system, params: CorrectorParams, control: Control, targets: Targets,
              offsets: jax.Array | None = None) -> Rollout:
  """PD-tracking rollout of one motion.

  Args:
    system: the brax System (an mjx.Model) of `humanoid.brax_system(params.spec)`.
    params: corrector settings (only the static ones are read: spec, fps, substeps).
    control: controller gains and bounds.
    targets: Targets with (F, ...) arrays.
    offsets: optional (F, NUM_BALLS, 3) rotation vectors composed onto the target local
      rotations (the iterative-learning refinement's correction of the PD targets).

  Returns:
    Rollout with (F, ...) arrays.
  """
  index = humanoid.model_index(params.spec)
  system = controlled_system(system, control, index)
  frames = prepare(targets, offsets, params.frame_dt)
  _, out = run_frames(system, params, control, initial_data(system, index, frames), frames)
  return out


def static_part(params: CorrectorParams) -> CorrectorParams:
  """The settings the compiled rollout depends on (others are passed as `Control`)."""
  return CorrectorParams(fps=params.fps, substeps=params.substeps,
                         contact_radius=params.contact_radius, friction=params.friction,
                         armature=params.armature, solver_iterations=params.solver_iterations,
                         solver=params.solver, jacobian=params.jacobian,
                         contact_timeconst=params.contact_timeconst)


@functools.lru_cache(maxsize=16)
def _compiled(static: CorrectorParams):
  system = humanoid.brax_system(static.spec)

  def batched(control: Control, targets: Targets, offsets: jax.Array) -> Rollout:
    return jax.vmap(lambda t, o: track_one(system, static, control, t, o))(targets, offsets)

  return jax.jit(batched)


def make_rollout(params: CorrectorParams):
  """A jitted batched rollout: (Targets (B, F, ...), offsets (B, F, NUM_BALLS, 3)) -> Rollout.

  Compiled once per static settings and shape; gains and bounds are runtime inputs.
  """
  control = make_control(params)
  compiled = _compiled(static_part(params))
  return lambda targets, offsets: compiled(control, targets, offsets)
