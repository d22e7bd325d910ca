"""An MJCF humanoid built from the 22-joint skeleton, loaded with brax's MJCF loader.

The model lives in the skeleton's own frame (Y up, body facing +Z at rest): gravity points
along -Y and the floor plane's normal is +Y, so simulator positions are skeleton positions
and no axis conversion is needed. Every skeleton joint that has children owns a body with a
ball joint at its origin (the pelvis owns a free joint); the five leaf joints (toes, head,
wrists) are sites on their parent's body. Bone capsules carry human-like masses; small
spheres at the feet, knees, hands, pelvis and head are the only geoms that collide, and only
with the floor, so the contact count stays fixed and small (10).

The floor sits one contact-sphere radius below y = 0, so a joint resting on the floor has
height ~0, matching the motion data's convention (feet on y = 0).
"""

from __future__ import annotations

import dataclasses
import functools

from brax.io import mjcf
import jax
import mujoco
import numpy as np

from selfconsume.motion import skeleton

# Skeleton joints that own a simulated body, in body order (parents before children).
BODY_JOINTS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 16, 17, 18, 19)
# Bodies with a ball joint (all but the pelvis, which has the free joint).
BALL_JOINTS = BODY_JOINTS[1:]
NUM_BALLS = len(BALL_JOINTS)
# Leaf joints -> the skeleton joint whose body carries them as a site.
LEAF_OWNER = {10: 7, 11: 8, 15: 12, 20: 18, 21: 19}
# The single child each body's bone points at (the bone that body rotates).
BONE_CHILD = {1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 12: 15, 13: 16, 14: 17,
              16: 18, 17: 19, 18: 20, 19: 21}

# (capsule radius m, mass kg) per body: an adult of about 72 kg (segment shares after
# de Leva 1996, lumped onto this skeleton's bodies).
_SEGMENTS = {
    0: (0.09, 8.0), 3: (0.09, 6.0), 6: (0.095, 7.0), 9: (0.10, 8.0),
    1: (0.065, 10.0), 2: (0.065, 10.0), 4: (0.05, 3.2), 5: (0.05, 3.2),
    7: (0.035, 1.0), 8: (0.035, 1.0), 12: (0.05, 1.0),
    13: (0.045, 1.0), 14: (0.045, 1.0), 16: (0.042, 2.0), 17: (0.042, 2.0),
    18: (0.035, 1.2), 19: (0.035, 1.2),
}
_HEAD = (0.10, 4.5)   # sphere at the head joint, on the neck body
_HAND = (0.045, 0.4)  # sphere at the wrist, on the forearm body

# PD stiffness (N m / rad) per ball joint at stiffness 1, by joint; legs and trunk carry the
# body's weight, so they are stiffer than the arms and neck.
_KP = {1: 1200.0, 2: 1200.0, 4: 1000.0, 5: 1000.0, 7: 400.0, 8: 400.0,
       3: 1200.0, 6: 1000.0, 9: 800.0, 12: 150.0, 13: 300.0, 14: 300.0,
       16: 300.0, 17: 300.0, 18: 200.0, 19: 200.0}


@dataclasses.dataclass(frozen=True)
class HumanoidSpec:
  """What the MJCF is built from; hashable so built models can be cached.

  Attributes:
    timestep: simulation step in seconds (frame time / substeps).
    contact_radius: radius (m) of the colliding spheres; the floor is this far below y = 0.
    friction: sliding friction coefficient between the spheres and the floor.
    armature: rotor inertia (kg m^2) added to every ball dof, for stable stiff PD.
    solver_iterations: constraint-solver iterations.
    solver: MuJoCo constraint solver, 'Newton' or 'CG'.
    jacobian: 'dense' or 'sparse' mass matrix and constraint Jacobian.
    contact_timeconst: contact stiffness as MuJoCo's solref time constant (s); smaller is
      stiffer (less penetration), at least two time steps.
    hinge_triplets: three hinges (x, y, z) per joint instead of a ball joint; only for
      comparing brax's own pipelines, which reject ball joints (the corrector needs balls).
  """
  timestep: float = 0.005
  contact_radius: float = 0.02
  friction: float = 2.0
  armature: float = 0.05
  solver_iterations: int = 8
  solver: str = "CG"
  jacobian: str = "sparse"
  contact_timeconst: float = 0.01
  hinge_triplets: bool = False


def _fmt(v) -> str:
  return " ".join(f"{float(x):.5f}" for x in np.atleast_1d(v))


def _children(j: int) -> list[int]:
  return [c for c in range(skeleton.NUM_JOINTS) if skeleton.PARENTS[c] == j]


def build_mjcf(spec: HumanoidSpec = HumanoidSpec()) -> str:
  """The humanoid as an MJCF string (T-pose at qpos = identity rotations)."""
  offsets = skeleton.REST_OFFSETS
  r = spec.contact_radius
  contact_sites = {10, 11, 4, 5, 20, 21, 0, 15}  # plus a heel sphere per ankle

  def contact(pos) -> str:
    return (f'<geom type="sphere" size="{r}" pos="{_fmt(pos)}" contype="0" '
            f'conaffinity="1" mass="0.001" group="3"/>')

  def body(j: int, indent: str) -> str:
    lines = []
    pos = np.zeros(3) if j == 0 else offsets[j]
    root_height = skeleton.standing_root_height()
    if j == 0:
      pos = np.array([0.0, root_height, 0.0])
    lines.append(f'{indent}<body name="b{j}" pos="{_fmt(pos)}">')
    inner = indent + "  "
    if j == 0:
      lines.append(f'{inner}<freejoint name="root"/>')
    else:
      if spec.hinge_triplets:
        for axis, name in (("1 0 0", "x"), ("0 1 0", "y"), ("0 0 1", "z")):
          lines.append(f'{inner}<joint name="j{j}{name}" type="hinge" axis="{axis}"/>')
      else:
        lines.append(f'{inner}<joint name="j{j}" type="ball"/>')
    radius, mass = _SEGMENTS[j]
    if j == 0:
      a, b = offsets[2], offsets[1]
    elif j == 9:
      a, b = np.zeros(3), offsets[12]
    else:
      a, b = np.zeros(3), offsets[BONE_CHILD[j]]
    lines.append(f'{inner}<geom type="capsule" size="{radius}" fromto="{_fmt(a)} {_fmt(b)}" '
                 f'mass="{mass}"/>')
    lines.append(f'{inner}<site name="s{j}" pos="0 0 0"/>')
    if j in contact_sites:
      lines.append(inner + contact(np.zeros(3)))
    if j in (7, 8):  # heel: below the ankle, level with the toe
      heel = np.array([0.0, offsets[BONE_CHILD[j]][1], -0.03])
      lines.append(inner + contact(heel))
    for leaf, owner in LEAF_OWNER.items():
      if owner == j:
        lines.append(f'{inner}<site name="s{leaf}" pos="{_fmt(offsets[leaf])}"/>')
        if leaf in contact_sites:
          lines.append(inner + contact(offsets[leaf]))
        if leaf == 15:
          lines.append(f'{inner}<geom type="sphere" size="{_HEAD[0]}" '
                       f'pos="{_fmt(offsets[leaf] + np.array([0, 0.03, 0]))}" mass="{_HEAD[1]}"/>')
        if leaf in (20, 21):
          lines.append(f'{inner}<geom type="sphere" size="{_HAND[0]}" '
                       f'pos="{_fmt(offsets[leaf])}" mass="{_HAND[1]}"/>')
    for c in _children(j):
      if c in BODY_JOINTS:
        lines.append(body(c, inner))
    lines.append(f"{indent}</body>")
    return "\n".join(lines)

  return f"""<mujoco model="selfconsume_humanoid">
  <compiler angle="radian"/>
  <option timestep="{spec.timestep}" gravity="0 -9.81 0" integrator="Euler" cone="pyramidal"
          solver="{spec.solver}" jacobian="{spec.jacobian}" iterations="{spec.solver_iterations}"
          ls_iterations="{spec.solver_iterations}"/>
  <default>
    <geom contype="0" conaffinity="0" friction="{spec.friction} 0.005 0.0001"
          solref="{spec.contact_timeconst} 1"/>
    <joint armature="{spec.armature}"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" size="50 50 0.1" pos="0 {-r} 0" zaxis="0 1 0"
          contype="1" conaffinity="1"/>
{body(0, "    ")}
  </worldbody>
</mujoco>
"""


@functools.lru_cache(maxsize=8)
def mj_model(spec: HumanoidSpec = HumanoidSpec()) -> mujoco.MjModel:
  """The compiled MuJoCo model (used for constants and the plain-MuJoCo baseline)."""
  return mujoco.MjModel.from_xml_string(build_mjcf(spec))


@functools.lru_cache(maxsize=8)
def brax_system(spec: HumanoidSpec = HumanoidSpec()):
  """The humanoid as a brax `System` (an `mjx.Model`), via brax's MJCF loader."""
  # Concrete arrays even when first built while a jitted caller is traced (a fused
  # generation): the cached System must not hold that trace's tracers.
  with jax.ensure_compile_time_eval():
    return mjcf.loads(build_mjcf(spec))


@dataclasses.dataclass(frozen=True)
class ModelIndex:
  """Index arrays into the model's qpos / qvel / sites, and per-joint constants.

  Attributes:
    ball_qpos: (NUM_BALLS, 4) qpos indices of each ball joint's quaternion.
    ball_dof: (NUM_BALLS, 3) qvel indices of each ball joint.
    site_of_joint: (22,) site index of each skeleton joint.
    kp: (NUM_BALLS,) PD stiffness at stiffness 1.
    dof_inertia: (NUM_BALLS, 3) diagonal of the mass matrix (armature included) per ball dof
      in the rest pose.
    total_mass: kg.
  """
  ball_qpos: np.ndarray
  ball_dof: np.ndarray
  site_of_joint: np.ndarray
  kp: np.ndarray
  dof_inertia: np.ndarray
  total_mass: float


@functools.lru_cache(maxsize=8)
def model_index(spec: HumanoidSpec = HumanoidSpec()) -> ModelIndex:
  """Index arrays and constants of the model built from `spec`."""
  m = mj_model(spec)
  ball_qpos, ball_dof = [], []
  for j in BALL_JOINTS:
    jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"j{j}")
    ball_qpos.append(m.jnt_qposadr[jid] + np.arange(4))
    ball_dof.append(m.jnt_dofadr[jid] + np.arange(3))
  sites = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, f"s{j}")
           for j in range(skeleton.NUM_JOINTS)]
  d = mujoco.MjData(m)
  mujoco.mj_forward(m, d)
  full = np.zeros((m.nv, m.nv))
  mujoco.mj_fullM(m, d, full)
  diag = np.diag(full)
  ball_dof = np.array(ball_dof)
  return ModelIndex(
      ball_qpos=np.array(ball_qpos), ball_dof=ball_dof, site_of_joint=np.array(sites),
      kp=np.array([_KP[j] for j in BALL_JOINTS]),
      dof_inertia=diag[ball_dof], total_mass=float(m.body_mass.sum()))
