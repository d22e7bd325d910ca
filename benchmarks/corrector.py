"""Physics corrector throughput: MJX (batched, jitted) versus plain MuJoCo, one motion at a time.

Corrects 64 procedural motions x 196 frames at the default simulation rate and reports motion
seconds corrected per wall second; then runs the same PD-tracking rollout (same MJCF, time
step, control law and targets) in the `mujoco` package on a subset of the motions, one at a
time, and scales its time to the whole batch. Also reports tracking quality of the clean
motions: plain PD, after iterative-learning refinement, and (on the first few motions) after
gradient refinement through the simulation.

  python -m benchmarks.corrector [--motions 64] [--frames 196] [--mujoco_motions 8]

Last line: JSON {"realtime_factor", "ratio_vs_mujoco", "compile_s", ...}.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from selfconsume.data import procedural
from selfconsume.physics import corrector
from selfconsume.physics import humanoid
from selfconsume.physics import params as params_lib
from selfconsume.physics import rollout as rollout_lib


def _motions(count: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(count, frames, 22, 3) procedural motions, cropped or held at their last frame; each
  one's own frame count (<= frames); and its group: 'jump' (has a two-footed jump), 'run'
  or 'other'."""
  rng = np.random.default_rng(seed)
  out, own, groups = [], [], []
  while len(out) < count:
    joints, _, families = procedural.sample_motion(rng)
    own.append(min(len(joints), frames))
    if len(joints) < frames:
      joints = np.concatenate([joints, np.repeat(joints[-1:], frames - len(joints), 0)])
    out.append(joints[:frames])
    groups.append("jump" if any(f.startswith("jump") for f in families)
                  else "run" if "run" in families else "other")
  return np.stack(out).astype(np.float32), np.array(own), groups


def _by_group(values: jax.Array, groups: list[str]) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  return {g: round(float(values[[x == g for x in groups]].mean()), 4)
          for g in sorted(set(groups))}


# ----------------------------------------------------------------------------- numpy control
def _qmul(a, b):
  aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
  bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
  return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                   aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
                  -1)


def _conj(q):
  return q * np.array([1.0, -1.0, -1.0, -1.0])


def _to_rotvec(q):
  q = np.where(q[..., :1] < 0, -q, q)
  s = np.sqrt(np.sum(q[..., 1:] ** 2, -1, keepdims=True) + 1e-16)
  return q[..., 1:] * (2.0 * np.arctan2(s, q[..., :1]) / s)


def _from_rotvec(v):
  a = np.sqrt(np.sum(v * v, -1, keepdims=True) + 1e-16)
  return np.concatenate([np.cos(0.5 * a), v * (np.sin(0.5 * a) / a)], -1)


def _clip_norm(v, bound):
  n = np.sqrt(np.sum(v * v) + 1e-12)
  return v * min(1.0, bound / n)


def mujoco_rollout(params: params_lib.CorrectorParams, targets, frames: int) -> np.ndarray:
  """The rollout of `rollout.track_one` in plain MuJoCo for one motion; returns root (F, 3)."""
  spec = params.spec
  model = mujoco.MjModel.from_xml_string(humanoid.build_mjcf(spec))
  index = humanoid.model_index(spec)
  control = rollout_lib.make_control(params)
  kp = np.asarray(control.kp, np.float64)
  comp = np.asarray(control.compensate, np.float64)
  ball_qpos, ball_dof = index.ball_qpos, index.ball_dof.reshape(-1)
  model.dof_damping[ball_dof] = np.asarray(control.kd).reshape(-1)
  kd = np.asarray(control.kd, np.float64)
  data = mujoco.MjData(model)
  dt = params.frame_dt
  mass = index.total_mass
  weight = mass * rollout_lib.GRAVITY
  wr = params.root_frequency
  rot_inertia = mass * 0.15
  local, local_vel, root_pos, root_vel, root_quat, root_ang = (np.asarray(x, np.float64)
                                                               for x in targets)
  data.qpos[0:3] = root_pos[0]
  data.qpos[3:7] = root_quat[0]
  data.qpos[ball_qpos.reshape(-1)] = local[0].reshape(-1)
  mujoco.mj_forward(model, data)
  roots = np.zeros((frames, 3))
  for f in range(frames):
    roots[f] = data.qpos[0:3]
    for k in range(params.substeps):
      s = k / params.substeps * dt
      q = data.qpos[ball_qpos]
      q_now = _qmul(local[f], _from_rotvec(local_vel[f] * s))
      tau = kp * _to_rotvec(_qmul(_conj(q), q_now)) + kd * local_vel[f]
      tau += comp * data.qfrc_bias[ball_dof].reshape(-1, 3)
      force = mass * (wr * wr * (root_pos[f] + root_vel[f] * s - data.qpos[0:3])
                      + 2 * wr * (root_vel[f] - data.qvel[0:3]))
      fxz = _clip_norm(force[[0, 2]], params.max_root_force_xz * weight)
      fy = np.clip(force[1], -params.max_root_force_y * weight, params.max_root_force_y * weight)
      r_now = _qmul(root_quat[f], _from_rotvec(root_ang[f] * s))
      r_err = _to_rotvec(_qmul(_conj(data.qpos[3:7]), r_now))
      torque = rot_inertia * (wr * wr * r_err + 2 * wr * (root_ang[f] - data.qvel[3:6]))
      data.qfrc_applied[:] = 0.0
      data.qfrc_applied[ball_dof] = tau.reshape(-1)
      data.qfrc_applied[0:3] = [fxz[0], fy, fxz[1]]
      data.qfrc_applied[3:6] = _clip_norm(torque, params.max_root_torque)
      mujoco.mj_step(model, data)
  return roots


def _numpy_targets(params, joints):
  """Per-frame targets as the MJX rollout builds them: (local, local_vel, pos, vel, quat, ang)."""
  padded = corrector._smooth_time(jnp.asarray(joints)[None], params.reference_sigma)[0]  # pylint: disable=protected-access
  t = rollout_lib.targets_from_joints(padded)
  dt = params.frame_dt
  local_vel = rollout_lib._angular_velocity(t.local_quat, dt)  # pylint: disable=protected-access
  root_vel = jnp.concatenate([(t.root_pos[1:] - t.root_pos[:-1]) / dt, jnp.zeros((1, 3))])
  root_ang = rollout_lib._angular_velocity(t.root_quat, dt)  # pylint: disable=protected-access
  return (t.local_quat, local_vel, t.root_pos, root_vel, t.root_quat, root_ang)


def time_backends(steps: int = 200, batch: int = 8) -> dict[str, dict[str, float]]:
  """Compile and run times of a passive (no control) batched rollout per physics pipeline.

  Brax's generalized / positional / spring pipelines reject ball joints, so all pipelines
  are timed on the same humanoid with hinge triplets (3 hinges per joint).
  """
  spec = dataclasses.replace(params_lib.CorrectorParams().spec, hinge_triplets=True)
  system = humanoid.brax_system(spec)
  out = {}
  for name in ("mjx", "generalized", "positional", "spring"):
    pipeline = importlib.import_module(f"brax.{name}.pipeline")

    def run(q, pipeline=pipeline):
      state = pipeline.init(system, q, jnp.zeros(system.qd_size()))
      act = jnp.zeros(system.act_size())
      state, _ = jax.lax.scan(lambda s, _: (pipeline.step(system, s, act), None), state, None,
                              length=steps)
      return state.q
    run = jax.jit(jax.vmap(run))
    q = jnp.tile(jnp.asarray(system.init_q), (batch, 1))
    try:
      start = time.perf_counter()
      jax.block_until_ready(run(q))
      first = time.perf_counter() - start
      start = time.perf_counter()
      jax.block_until_ready(run(q))
      steady = time.perf_counter() - start
      out[name] = {"compile_s": round(first - steady, 1),
                   "steps_per_s": round(steps * batch / steady, 1)}
    except Exception as e:  # pylint: disable=broad-except  (report, do not stop)
      out[name] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--motions", type=int, default=64)
  parser.add_argument("--frames", type=int, default=196)
  parser.add_argument("--mujoco_motions", type=int, default=8)
  parser.add_argument("--refine_iterations", type=int, default=2,
                      help="iterative-learning refinement passes")
  parser.add_argument("--gradient_steps", type=int, default=3,
                      help="Adam steps per window of gradient refinement (0: skip it)")
  parser.add_argument("--gradient_motions", type=int, default=8,
                      help="motions (the first ones) refined by gradient descent")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--backends", action="store_true",
                      help="only time the physics pipelines (hinge-triplet humanoid)")
  args = parser.parse_args()
  if args.backends:
    print(json.dumps(time_backends()))
    return

  params = params_lib.CorrectorParams()
  joints, own_frames, groups = _motions(args.motions, args.frames, args.seed)
  lengths = jnp.full((args.motions,), args.frames, jnp.int32)
  motion_seconds = args.motions * args.frames / params.fps

  start = time.perf_counter()
  out, info = corrector.correct_joints(joints, lengths, params)
  jax.block_until_ready(out)
  first = time.perf_counter() - start
  start = time.perf_counter()
  out, info = corrector.correct_joints(joints, lengths, params)
  jax.block_until_ready(out)
  steady = time.perf_counter() - start
  realtime = motion_seconds / steady

  refined_params = dataclasses.replace(params, refine_iterations=args.refine_iterations)
  _, refined = corrector.correct_joints(joints, lengths, refined_params)
  gradient = {}
  if args.gradient_steps:
    # Gradient refinement costs ~10 plain rollouts: run it on the first few motions and
    # compare with plain PD on the same ones.
    g = min(args.gradient_motions, args.motions)
    gradient_params = dataclasses.replace(params, refine_method="gradient",
                                          refine_iterations=args.gradient_steps)
    start = time.perf_counter()
    _, info_gradient = corrector.correct_joints(joints[:g], lengths[:g], gradient_params)
    jax.block_until_ready(info_gradient)
    gradient = {
        "gradient_motions": g, "gradient_steps": args.gradient_steps,
        "tracking_error_plain_on_those_m": round(float(jnp.mean(
            info_gradient["tracking_error_unrefined_m"])), 4),
        "tracking_error_gradient_m": round(float(jnp.mean(info_gradient["tracking_error_m"])), 4),
        "gradient_seconds": round(time.perf_counter() - start, 1),  # compile included
    }

  n = min(args.mujoco_motions, args.motions)
  targets = [_numpy_targets(params, joints[i]) for i in range(n)]
  start = time.perf_counter()
  for i in range(n):
    mujoco_rollout(params, targets[i], args.frames)
  mujoco_seconds = (time.perf_counter() - start) * args.motions / n
  mujoco_realtime = motion_seconds / mujoco_seconds

  # The same error over each motion's own frames only (the held last frame is easy to track).
  own = np.arange(args.frames)[None, :] < own_frames[:, None]
  per_frame = np.linalg.norm(np.asarray(out) - joints, axis=-1).mean(axis=-1)
  own_error = (per_frame * own).sum(axis=1) / own.sum(axis=1)

  result = {
      "realtime_factor": round(realtime, 3),
      "ratio_vs_mujoco": round(realtime / mujoco_realtime, 4),
      "compile_s": round(first - steady, 1),
      "mjx_batch_seconds": round(steady, 2),
      "mujoco_realtime_factor": round(mujoco_realtime, 3),
      "mujoco_motions_timed": n,
      "motions": args.motions, "frames": args.frames, "substeps": params.substeps,
      "backend": params.backend,
      "tracking_error_m": round(float(jnp.mean(info["tracking_error_m"])), 4),
      "tracking_error_refined_m": round(float(jnp.mean(refined["tracking_error_m"])), 4),
      "refine_iterations": args.refine_iterations,
      **gradient,
      "tracking_error_by_group_m": _by_group(info["tracking_error_m"], groups),
      "tracking_error_own_frames_m": round(float(own_error.mean()), 4),
      "tracking_error_own_frames_by_group_m": _by_group(own_error, groups),
      "motions_by_group": {g: groups.count(g) for g in sorted(set(groups))},
      "fall_rate": round(float(jnp.mean(info["fell"])), 4),
      "fall_rate_by_group": _by_group(info["fell"], groups),
      # The fail-safe: resets per motion and the share of frames imitated without one.
      "resets": round(float(jnp.mean(info["resets"])), 4),
      "imitated_fraction": round(float(jnp.mean(info["imitated_fraction"])), 4),
      "nonfinite_rate": round(float(jnp.mean(info["nonfinite"])), 4),
      "residual_force": round(float(jnp.mean(info["residual_force"])), 4),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
