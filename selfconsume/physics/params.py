"""Settings of the physics corrector, as one frozen (hashable) dataclass.

Hashable so that jitted rollouts can be cached per setting; `from_config` reads them from an
ml_collections ConfigDict (or any mapping) and names the offending field on bad values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from selfconsume import errors
from selfconsume.physics import humanoid

BACKENDS = ("mjx",)
NONFINITE_POLICIES = ("keep", "drop")
REFINE_METHODS = ("ilc", "gradient")
SOLVERS = ("CG", "Newton")
FAILSAFES = ("reset", "none")
UNREALISABLE_POLICIES = ("keep", "original", "drop", "blend")
JACOBIANS = ("sparse", "dense")


@dataclasses.dataclass(frozen=True)
class CorrectorParams:
  """How motions are simulated and corrected.

  Attributes:
    backend: physics pipeline; 'mjx' (MuJoCo XLA on the brax System). Brax's own
      generalized / positional / spring pipelines reject ball joints (see benchmarks/corrector.py).
    fps: frame rate of the motions.
    substeps: simulation steps per motion frame (timestep = 1 / (fps * substeps)).
    max_batch: motions simulated per compiled call; larger batches run as chunks of this
      size (the last chunk padded), so one compiled shape serves every batch size.
    reference_median_frames, reference_glitch_m: a frame of the motion whose pose is on
      average (over joints) more than reference_glitch_m from the running median (over
      reference_median_frames frames, odd) of the poses around it is a glitch and is replaced
      by that median pose before the low-pass: MDM samples have poses that jump 0.5 m for
      one or two frames (a crouching pelvis at standing height), and a PD-tracked body
      kicked by them leaves the floor. Smooth motion and steps stay as they are (a median of
      monotone frames is the middle one). reference_median_frames=1 turns it off.
    reference_sigma: std (frames) of a zero-phase Gaussian low-pass applied to the joint
      positions before they become PD targets: the controller's bandwidth (~3 Hz at 1 frame,
      20 fps); 0 tracks the raw reference.
    stiffness: multiplier on the per-joint PD stiffness table of `humanoid`.
    damping_ratio: PD damping relative to critical for each joint's inertia.
    gravity_compensation: add the model's bias forces (gravity, Coriolis) to the joint torques.
    root_frequency: natural frequency (rad/s) of the residual root PD (force and torque).
    max_root_force_xz: bound on the horizontal residual force, as a share of body weight.
      A horizontal push cannot make the body float or sink, and it stays below the feet's
      friction (friction x weight), so it cannot drag planted feet on its own; runs need ~1.
    max_root_force_y: bound on the vertical residual force (either sign), share of body weight.
      Below 1 so the humanoid cannot float: its weight has to rest on the floor. Larger
      values let it follow hops and jumps; smaller ones unload the feet less (less skating).
      Defaults measured on 64 procedural motions x 196 frames (see benchmarks/corrector.py).
    max_root_torque: bound (N m) on the residual torque that keeps the trunk oriented.
    refine_method: how the PD targets are refined after plain PD tracking (when
      refine_iterations > 0): 'ilc' (iterative learning control: whole-motion reruns of the
      compiled rollout with the targets offset by the rotation error left; no extra
      compilation) or 'gradient' (Adam steps on per-frame target offsets with gradients
      through the simulation over truncated windows; `selfconsume.physics.refine`).
    refine_iterations: refinement passes ('ilc') or Adam steps per window ('gradient');
      0 = plain PD tracking.
    refine_rate: step size of 'ilc' (optax SGD learning rate on the rotation residual).
    refine_window: frames per truncated window of 'gradient' refinement.
    refine_learning_rate: Adam learning rate (rad) of 'gradient' refinement.
    nonfinite: what to do with samples whose simulation is not finite: 'keep' the uncorrected
      motion, or 'drop' it (its length is set to 0 and its frames to zeros).
    fall_height_ratio, fall_min_drop_m: a sample "fell" when, on any of its frames, the
      simulated pelvis is below fall_height_ratio x the reference's pelvis height of that
      frame and at least fall_min_drop_m below it. Relative to the reference, so a reference
      that lies, sits or crawls is no fall; the absolute margin keeps a few centimetres of
      difference near the floor (reference pelvis at 0.15 m) from counting as one. Measured
      on the simulated state before the fail-safe acts: with failsafe='reset' it says the
      body lost its balance and was falling when it was caught (the returned motion holds
      at most the start of a fall, never a lying body; `resets` counts the catches, of
      falls and of any other failure).
    failsafe: what happens when the imitation fails (the mean per-joint distance between
      the simulated and the reference joints of a frame exceeds failsafe_threshold_m):
      'reset' (the paper's UHC: the simulated state is reset to the reference pose and
      velocities of that frame and the simulation goes on; every returned frame is within
      the threshold of the low-passed reference, so no fallen body is returned) or 'none'
      (the body goes on from where it is: falls stay in the output).
    failsafe_threshold_m: the failure threshold (m), 0.5 in the paper's code.
    failsafe_min_imitated: a corrected motion whose imitated_fraction (share of its frames
      not reset) is below this is flagged not realisable (info 'realisable' = False).
    failsafe_unrealisable: what a motion flagged not realisable becomes: 'keep' (the
      corrected motion, a chain of simulated snippets between resets: the paper's code
      keeps every sample), 'original' (the uncorrected sample, not replaced) or 'drop'
      (neither: info 'keep' is False, the output zeros, and the loop leaves the motion out of
      that generation's training data, which then holds fewer synthetic motions) or 'blend'
      (the corrected motion where the humanoid imitates the sample, the low-passed sample
      the humanoid tracks where it does not: frame by frame, the output moves from the
      simulated to the reference pose as that frame's pre-reset error grows from a quarter
      to half of failsafe_threshold_m, so it has reached the reference before any reset and
      no reset teleports it; every motion is kept, none is dropped). Default
      'keep': it is the paper's protocol, and between resets such a motion is still the
      closest physically simulated version of the sample (each reset puts the body on the
      reference, so frames near a reset repeat the sample itself).
    solver, jacobian: MuJoCo's constraint solver ('CG' or 'Newton') and mass-matrix layout
      ('sparse' or 'dense'). CG with a sparse mass matrix needs no LAPACK call: batched
      LAPACK factorisations (Newton's and the dense mass matrix's Cholesky) run on XLA:CPU's
      intra-op thread pool and wait for it, so two of them at once can deadlock a 2-core
      machine (seen as intermittent hangs with every thread idle). Same tracking, 10% faster
      on CPU (measured on 64 motions x 196 frames).
    contact_radius, friction, armature, solver_iterations, contact_timeconst: see
      `humanoid.HumanoidSpec`.
  """
  backend: str = "mjx"
  fps: float = 20.0
  substeps: int = 10
  max_batch: int = 8
  reference_median_frames: int = 5
  reference_glitch_m: float = 0.05
  reference_sigma: float = 1.0
  stiffness: float = 2.0
  damping_ratio: float = 1.0
  gravity_compensation: bool = True
  root_frequency: float = 30.0
  max_root_force_xz: float = 1.0
  max_root_force_y: float = 0.5
  max_root_torque: float = 300.0
  refine_method: str = "ilc"
  refine_iterations: int = 0
  refine_rate: float = 0.7
  refine_window: int = 5
  refine_learning_rate: float = 0.02
  nonfinite: str = "keep"
  fall_height_ratio: float = 0.6
  fall_min_drop_m: float = 0.2
  failsafe: str = "reset"
  failsafe_threshold_m: float = 0.5
  failsafe_min_imitated: float = 0.5
  failsafe_unrealisable: str = "keep"
  contact_radius: float = 0.02
  friction: float = 2.0
  armature: float = 0.05
  solver_iterations: int = 8
  solver: str = "CG"
  jacobian: str = "sparse"
  contact_timeconst: float = 0.01

  @property
  def frame_dt(self) -> float:
    return 1.0 / self.fps

  @property
  def spec(self) -> humanoid.HumanoidSpec:
    return humanoid.HumanoidSpec(
        timestep=self.frame_dt / self.substeps, contact_radius=self.contact_radius,
        friction=self.friction, armature=self.armature,
        solver_iterations=self.solver_iterations, solver=self.solver, jacobian=self.jacobian,
        contact_timeconst=self.contact_timeconst)

  def validate(self) -> CorrectorParams:
    if self.backend not in BACKENDS:
      raise errors.ConfigError(
          f"physics.backend={self.backend!r}: expected one of {BACKENDS} (brax's generalized, "
          "positional and spring pipelines do not support the humanoid's ball joints)")
    if self.nonfinite not in NONFINITE_POLICIES:
      raise errors.ConfigError(
          f"physics.nonfinite={self.nonfinite!r}: expected one of {NONFINITE_POLICIES}")
    if self.substeps < 1 or self.fps <= 0:
      raise errors.ConfigError(
          f"physics.substeps={self.substeps}, physics.fps={self.fps}: expected >= 1 and > 0")
    if self.max_batch < 1:
      raise errors.ConfigError(f"physics.max_batch={self.max_batch}: expected >= 1")
    if self.solver not in SOLVERS:
      raise errors.ConfigError(f"physics.solver={self.solver!r}: expected one of {SOLVERS}")
    if self.jacobian not in JACOBIANS:
      raise errors.ConfigError(
          f"physics.jacobian={self.jacobian!r}: expected one of {JACOBIANS}")
    if self.refine_method not in REFINE_METHODS:
      raise errors.ConfigError(
          f"physics.refine_method={self.refine_method!r}: expected one of {REFINE_METHODS}")
    if self.reference_median_frames < 1 or self.reference_median_frames % 2 == 0:
      raise errors.ConfigError(f"physics.reference_median_frames={self.reference_median_frames}: "
                               "expected an odd number >= 1 (1 = off)")
    if not self.reference_glitch_m >= 0:
      raise errors.ConfigError(
          f"physics.reference_glitch_m={self.reference_glitch_m}: expected >= 0 (metres)")
    if self.refine_window < 1:
      raise errors.ConfigError(f"physics.refine_window={self.refine_window}: expected >= 1")
    if self.failsafe not in FAILSAFES:
      raise errors.ConfigError(
          f"physics.failsafe={self.failsafe!r}: expected one of {FAILSAFES}")
    if not self.failsafe_threshold_m > 0:
      raise errors.ConfigError(
          f"physics.failsafe_threshold_m={self.failsafe_threshold_m}: expected > 0 (metres)")
    if not 0.0 <= self.failsafe_min_imitated <= 1.0:
      raise errors.ConfigError(
          f"physics.failsafe_min_imitated={self.failsafe_min_imitated}: expected in [0, 1]")
    if self.failsafe_unrealisable not in UNREALISABLE_POLICIES:
      raise errors.ConfigError(
          f"physics.failsafe_unrealisable={self.failsafe_unrealisable!r}: expected one of "
          f"{UNREALISABLE_POLICIES}")
    if not 0.0 < self.fall_height_ratio <= 1.0:
      raise errors.ConfigError(
          f"physics.fall_height_ratio={self.fall_height_ratio}: expected in (0, 1]")
    if not self.fall_min_drop_m >= 0:
      raise errors.ConfigError(f"physics.fall_min_drop_m={self.fall_min_drop_m}: expected >= 0")
    if self.refine_iterations < 0:
      raise errors.ConfigError(
          f"physics.refine_iterations={self.refine_iterations}: expected >= 0")
    return self


def from_config(config: Mapping[str, Any] | None = None, **overrides) -> CorrectorParams:
  """CorrectorParams from a ConfigDict / mapping of field names (unknown names are errors)."""
  if config is not None and hasattr(config, "to_dict"):  # ml_collections.ConfigDict
    config = config.to_dict()
  values = dict(config or {})
  values.update(overrides)
  known = {f.name for f in dataclasses.fields(CorrectorParams)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise errors.ConfigError(f"physics config: unknown fields {unknown}; known: {sorted(known)}")
  return CorrectorParams(**values).validate()
