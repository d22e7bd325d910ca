"""The physics corrector: each motion is replaced by a simulated humanoid's imitation of it.

correct(motions, lengths, params) works on raw (denormalised) 263-d features, as the
self-correcting loop holds them; correct_joints(...) is the same on joint positions (the
features' floor/heading canonicalisation would hide injected float/sink artefacts, so
tests of those work here).

Pipeline per batch: joints -> (glitch frames replaced, low-passed) tracking targets by
inverse kinematics -> PD-tracking rollout of the whole batch in MuJoCo XLA (`rollout`) ->
optional refinement passes -> simulated joints. Refinement is either iterative learning
control ('ilc': each pass runs the same compiled rollout again with the PD targets offset by
the joint-rotation error the previous pass left, an optax SGD step with the tracking
residual as the update direction, so it costs no extra compilation) or gradient descent
through the simulation ('gradient': Adam on per-frame PD-target offsets over truncated
windows, `refine`).

Inside the rollout a fail-safe (the paper's) resets the simulated humanoid to the reference
state of a frame when the imitation has failed there (mean joint error above
`failsafe_threshold_m`) and goes on: every returned frame is within that threshold of the
(low-passed) reference, so no fallen body is returned; `info` counts the resets per motion.
Refinement compares runs that both use it, preferring fewer resets, then lower error, so it
never trades tracking for resets.

What a motion that resets on most frames counts as: it is flagged not realisable
(`realisable` = imitated_fraction >= `failsafe_min_imitated`) and, by default, kept as
corrected, as the paper's code keeps every sample: between resets it is still simulated, and
no frame of it is further from the sample than the threshold, so it cannot drag the loop's
data away the way a fallen body did; the flag and the fraction let a run report how often
it happens. `failsafe_unrealisable='original'` returns such motions uncorrected instead
('drop': not at all, the loop trains without them; 'blend': simulated where the humanoid
imitates the sample, the low-passed sample where it fails, handed over before a reset so
that no reset shows; `blend_weight`);
with `failsafe_min_imitated=1` that is every motion that needed a reset (the motion preset's
choice: each reset is a one-frame teleport onto the reference, which a model fitted to the
corrected motions learns).

Every motion comes back corrected: mixing corrected and sampled motions (pi_gamma) is the
loop's, done once in `selfconsume.loop.replace_with_probability`. Samples whose simulation
(or input) is not finite are flagged and handled by
`params.nonfinite` ('keep' = keep the uncorrected motion, 'drop' = zeros and keep=False),
so no NaN ever leaves this module.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from selfconsume.motion import features as features_lib
from selfconsume.motion import rotations
from selfconsume.motion.frames import frame_mask
from selfconsume.physics import params as params_lib
from selfconsume.physics import refine as refine_lib
from selfconsume.physics import rollout as rollout_lib
from selfconsume.physics.params import CorrectorParams


def _as_params(params: CorrectorParams | Any | None) -> CorrectorParams:
  if isinstance(params, CorrectorParams):
    return params.validate()
  return params_lib.from_config(params)


def _edge_pad(joints: jax.Array, lengths: jax.Array) -> jax.Array:
  """Frames >= length repeat the last valid frame: (B, F, 22, 3)."""
  frames = joints.shape[1]
  idx = jnp.minimum(jnp.arange(frames)[None, :], jnp.maximum(lengths, 1)[:, None] - 1)
  return jnp.take_along_axis(joints, idx[:, :, None, None], axis=1)


def _pad_frames(joints: jax.Array, radius: int) -> jax.Array:
  """(B, F, ...) -> (B, F + 2 radius, ...), the first and last frames repeated."""
  return jnp.concatenate([jnp.repeat(joints[:, :1], radius, axis=1), joints,
                          jnp.repeat(joints[:, -1:], radius, axis=1)], axis=1)


def _remove_glitches(joints: jax.Array, width: int, threshold: float) -> jax.Array:
  """Frames whose pose is on average more than `threshold` (m) from the running median pose
  (over `width` frames, edge-padded, per joint coordinate) become that median: (B, F, 22, 3).
  """
  if width <= 1:
    return joints
  padded = _pad_frames(joints, width // 2)
  frames = joints.shape[1]
  median = jnp.median(jnp.stack([padded[:, k:k + frames] for k in range(width)]), axis=0)
  distance = jnp.linalg.norm(joints - median, axis=-1).mean(axis=-1)
  return jnp.where((distance > threshold)[..., None, None], median, joints)


def _smooth_time(joints: jax.Array, sigma: float) -> jax.Array:
  """Zero-phase Gaussian low-pass over frames (edge-padded), (B, F, 22, 3)."""
  if sigma <= 0:
    return joints
  radius = int(math.ceil(3 * sigma))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), joints.dtype)
  padded = _pad_frames(joints, radius)
  frames = joints.shape[1]
  return sum(taps[k] * padded[:, k:k + frames] for k in range(2 * radius + 1))


def _traced(tree) -> bool:
  """Whether any leaf is a tracer: the call is being compiled into a caller's program."""
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _chunked(run, size: int):
  """Runs `run(*inputs)` over the batch (leading axis of every leaf) in chunks of `size`
  (the last one padded), so one compiled rollout serves every batch size.

  Inside a jitted caller (the fused generation) the chunks are one `lax.map`, and the caller
  holds the whole correction in one program. Called on the host, they are a Python loop over
  the standalone compiled rollout: every host-side correction of one shape (the correction
  floor, the diagnostics, the tests) then runs that one program instead of compiling the
  rollout again inside programs of its own.
  """
  def chunked(*inputs):
    batch = jax.tree.leaves(inputs)[0].shape[0]
    pad = -batch % size
    grow = lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]) if pad else x
    if not _traced(inputs):
      # Committed to one device whatever the caller's arrays were: how arguments are placed
      # is part of the compiled program's cache key, so the persistent cache would otherwise
      # hold one copy of the rollout per kind of caller.
      inputs = jax.device_put(jax.tree.map(grow, inputs), jax.local_devices()[0])
      outs = [run(*jax.tree.map(lambda x, i=i: x[i:i + size], inputs))
              for i in range(0, batch + pad, size)]
      return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:batch], *outs)
    if batch == size:
      return run(*inputs)
    inputs = jax.tree.map(grow, inputs)
    if batch + pad == size:
      return jax.tree.map(lambda x: x[:batch], run(*inputs))
    chunks = jax.tree.map(lambda x: x.reshape((-1, size) + x.shape[1:]), inputs)
    out = jax.lax.map(lambda args: run(*args), chunks)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:batch], out)
  return chunked


def _fori_loop(upper: int, body, carry):
  """`lax.fori_loop(0, upper, body, carry)` inside a jitted caller; a Python loop on the
  host, where the body's rollout is then the standalone compiled one (see `_chunked`)."""
  if _traced(carry):
    return jax.lax.fori_loop(0, upper, body, carry)
  for i in range(upper):
    carry = body(i, carry)
  return carry


def _mean_joint_error(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
  err = jnp.linalg.norm(a - b, axis=-1).mean(axis=-1)
  err = jnp.where(mask, err, 0.0)
  return jnp.sum(err, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1)


def _fewer_resets_or_lower_error(resets: jax.Array, error: jax.Array, best_resets: jax.Array,
                                 best_error: jax.Array) -> jax.Array:
  """(B,) bool: a run beats the best so far when it resets fewer times, or as often with a
  lower error (a reset puts the body back on the reference, so error alone would reward
  failing). NaN errors never win."""
  return (resets < best_resets) | ((resets == best_resets) & (error < best_error))


def _count_resets(out: rollout_lib.Rollout, mask: jax.Array) -> jax.Array:
  return jnp.sum(mask & out.reset, axis=1).astype(jnp.int32)


def _per_motion(take_new: jax.Array, new, old):
  """`new` where `take_new` (B,) is True, else `old`, per motion (pytrees of (B, ...))."""
  return jax.tree.map(
      lambda n, o: jnp.where(take_new.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)


def select_outputs(original: jax.Array, corrected: jax.Array, replaced: jax.Array,
                   nonfinite: jax.Array, policy: str) -> tuple[jax.Array, jax.Array]:
  """Mixes corrected and original samples and removes non-finite ones.

  Args:
    original, corrected: (B, ...) samples.
    replaced: (B,) bool, take the corrected sample.
    nonfinite: (B,) bool, the corrected sample is not usable.
    policy: 'keep' (use the original instead; dropped anyway if the original is itself
      not finite) or 'drop'.

  Returns:
    outputs (B, ...) with no NaN/inf, and keep (B,) bool (False = dropped, zeros).
  """
  axes = tuple(range(1, original.ndim))
  original_ok = jnp.all(jnp.isfinite(original), axis=axes)
  use_corrected = replaced & ~nonfinite
  if policy == "keep":
    keep = use_corrected | original_ok
  elif policy == "drop":
    keep = jnp.where(replaced, ~nonfinite, original_ok)
  else:
    raise ValueError(f"unknown non-finite policy {policy!r}")
  shape = (-1,) + (1,) * (original.ndim - 1)
  out = jnp.where(use_corrected.reshape(shape), jnp.nan_to_num(corrected),
                  jnp.nan_to_num(original))
  return jnp.where(keep.reshape(shape), out, 0.0), keep


def simulate(joints: jax.Array, lengths: jax.Array, params: CorrectorParams
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Tracks every motion in the humanoid simulator (no mixing, no NaN handling).

  Args:
    joints: (B, F, 22, 3) joint positions (metres, Y up, ground y = 0).
    lengths: (B,) valid frames.
    params: corrector settings.

  Returns:
    simulated joints (B, F, 22, 3) (none below the floor y = 0; frames >= length zero) and
    a dict of (B,) arrays:
    tracking_error_m (mean joint distance of the returned joints to the input; frames the
    fail-safe reset hold the reference), tracking_error_unrefined_m (the same before
    refinement), fell (the body's pelvis fell, relative to the reference's, before the
    fail-safe caught it: see CorrectorParams), residual_force (mean residual root force /
    body weight), nonfinite, resets (int32, frames of the motion's own length on which the
    fail-safe reset the state), imitated_fraction (share of those frames not reset) and
    realisable (imitated_fraction >= params.failsafe_min_imitated).
  """
  sim, info, _ = _simulate(joints, lengths, params)
  return sim, info


def _simulate(joints: jax.Array, lengths: jax.Array, params: CorrectorParams
              ) -> tuple[jax.Array, dict[str, jax.Array], tuple[jax.Array, jax.Array]]:
  """`simulate`, plus per frame the reference the humanoid tracked (B, F, 22, 3) and the
  rollout's pre-reset error (B, F) (m)."""
  joints = jnp.asarray(joints, jnp.float32)
  lengths = jnp.asarray(lengths, jnp.int32)
  frames = joints.shape[1]
  mask = frame_mask(lengths, frames)
  padded = _edge_pad(joints, lengths)
  # The reference the humanoid tracks: glitches removed, then low-passed. Errors are still
  # measured against the motion itself.
  reference = _smooth_time(_remove_glitches(padded, params.reference_median_frames,
                                            params.reference_glitch_m),
                           params.reference_sigma)
  targets = rollout_lib.targets_from_joints(reference)
  run = _chunked(rollout_lib.make_rollout(params), params.max_batch)
  offsets = jnp.zeros(targets.local_quat.shape[:-1] + (3,), jnp.float32)
  out = plain = run(targets, offsets)
  unrefined = _mean_joint_error(out.joints, padded, mask)
  plain_resets = _count_resets(plain, mask)
  if params.refine_iterations and params.refine_method == "gradient":
    refined = _chunked(refine_lib.make_refined_rollout(params), params.max_batch)
    out = refined(targets, padded, mask)
    # Each window keeps the better of refined and plain, but later windows start from a
    # different state; report the refined run only where it is better overall.
    err = _mean_joint_error(out.joints, padded, mask)
    better = _fewer_resets_or_lower_error(_count_resets(out, mask), err, plain_resets,
                                          unrefined)
    out = _per_motion(better, out, plain)
  elif params.refine_iterations:
    optimizer = optax.sgd(params.refine_rate)

    def refine_pass(_, carry):
      # Update direction: rotation still missing from the achieved local rotations (the
      # descent direction of the squared joint-rotation error w.r.t. the target offsets,
      # taking the simulator's response to a target change as identity).
      offsets, opt_state, out, best, best_err, best_resets = carry
      residual = rotations.quaternion_to_axis_angle(rotations.qmul(
          rotations.qinv(out.local_quat), targets.local_quat))
      residual = jnp.where(mask[..., None, None], residual, 0.0)
      updates, opt_state = optimizer.update(-residual, opt_state, offsets)
      offsets = optax.apply_updates(offsets, updates)
      out = run(targets, offsets)
      err = _mean_joint_error(out.joints, padded, mask)
      resets = _count_resets(out, mask)
      better = _fewer_resets_or_lower_error(resets, err, best_resets, best_err)
      return (offsets, opt_state, out, _per_motion(better, out, best),
              jnp.where(better, err, best_err), jnp.where(better, resets, best_resets))

    carry = (offsets, optimizer.init(offsets), out, out, unrefined, plain_resets)
    out = _fori_loop(params.refine_iterations, refine_pass, carry)[3]
  # MuJoCo's contacts are soft: a loaded foot sphere sinks a few millimetres into the floor
  # (more on impacts). The data's floor convention puts a resting joint at y = 0, and
  # joints_to_features lowers a motion by its lowest joint over all frames, so a single
  # sunk frame would lift every other frame of the corrected motion off the floor (the
  # float of corrected samples: 10 mm instead of 6 on generation-0 samples). The solver's
  # penetration is projected out of the returned joints.
  on_floor = out.joints.at[..., 1].max(0.0)
  sim = jnp.where(mask[..., None, None], on_floor, 0.0)
  error = _mean_joint_error(out.joints, padded, mask)
  # Falls are judged on the state before the fail-safe acted, against the reference's own
  # pelvis height (a lying or sitting reference is no fall).
  root_h = out.pelvis_height
  target_h = padded[..., 0, 1]
  low = ((root_h < params.fall_height_ratio * target_h)
         & (target_h - root_h >= params.fall_min_drop_m))
  fell = jnp.any(mask & low, axis=1)
  residual = jnp.sum(jnp.where(mask, out.residual, 0.0), 1) / jnp.maximum(mask.sum(1), 1)
  nonfinite = ~jnp.all(jnp.isfinite(out.joints), axis=(1, 2, 3))
  resets = _count_resets(out, mask)
  imitated = 1.0 - resets / jnp.maximum(lengths, 1).astype(jnp.float32)
  info = {"tracking_error_m": error, "tracking_error_unrefined_m": unrefined,
          "fell": fell, "residual_force": residual, "nonfinite": nonfinite,
          "resets": resets, "imitated_fraction": imitated,
          "realisable": imitated >= params.failsafe_min_imitated}
  return sim, info, (reference, out.error)


def blend_weight(error: jax.Array, threshold: float) -> jax.Array:
  """How much of a frame the 'blend' rule takes from the reference rather than the
  simulation, from the rollout's pre-reset error (any shape, m): 0 up to a quarter of the
  fail-safe threshold, 1 from half of it on, linear between. A reset fires only above the
  threshold, so by then the output already follows the reference the reset puts the body
  on: the hand-over is as smooth as the error's growth, and no reset shows as a jump."""
  start = 0.25 * threshold
  return jnp.clip((error - start) / start, 0.0, 1.0)


def correct_joints(joints: jax.Array, lengths: jax.Array,
                   params: CorrectorParams | Any | None = None
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Physics correction of joint-position motions.

  Args:
    joints: (B, F, 22, 3) joint positions, frames >= length ignored.
    lengths: (B,) int valid frames.
    params: CorrectorParams, or a ConfigDict / mapping of its fields (None = defaults).

  Returns:
    corrected (B, F, 22, 3) (frames >= length zero; never NaN) and info, a dict of (B,)
    arrays: tracking_error_m, tracking_error_unrefined_m, fell, residual_force, nonfinite,
    resets, imitated_fraction, realisable (see `simulate`), replaced (the corrected version
    was taken: finite, and realisable unless
    params.failsafe_unrealisable='keep'), keep (False = dropped, zeros: not finite under
    params.nonfinite='drop', not realisable under params.failsafe_unrealisable='drop').
  """
  params = _as_params(params)
  joints = jnp.asarray(joints, jnp.float32)
  lengths = jnp.asarray(lengths, jnp.int32)
  sim, info, (reference, frame_error) = _simulate(joints, lengths, params)
  if params.failsafe_unrealisable == "blend":
    # Unrealisable motions hand over to the reference the humanoid tracked (the low-passed
    # sample) where the imitation fails; realisable ones stay fully simulated.
    weight = jnp.where(info["realisable"][:, None], 0.0,
                       blend_weight(frame_error, params.failsafe_threshold_m))
    mask = frame_mask(lengths, joints.shape[1])[..., None, None]
    sim = jnp.where(mask, sim + weight[..., None, None] * (reference - sim), 0.0)
  replaced = jnp.ones(joints.shape[:1], bool)
  if params.failsafe_unrealisable in ("original", "drop"):
    replaced = info["realisable"]
  original = jnp.where(frame_mask(lengths, joints.shape[1])[..., None, None], joints, 0.0)
  out, keep = select_outputs(original, sim, replaced, info["nonfinite"], params.nonfinite)
  if params.failsafe_unrealisable == "drop":
    keep = keep & info["realisable"]
    out = jnp.where(keep[:, None, None, None], out, 0.0)
  info = dict(info, replaced=replaced & ~info["nonfinite"], keep=keep)
  return out, info


def correct(motions: jax.Array, lengths: jax.Array,
            params: CorrectorParams | Any | None = None
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Physics correction of HumanML3D feature motions (the loop's correction function).

  Args:
    motions: (B, F, 263) raw (denormalised) features, rows >= length zero.
    lengths: (B,) int valid feature rows.
    params: CorrectorParams or a ConfigDict / mapping of its fields (None = defaults).

  Returns:
    corrected (B, F, 263) raw features (rows >= length zero, never NaN; dropped samples are
    all zeros) and info: dict of (B,) arrays tracking_error_m, tracking_error_unrefined_m,
    fell, residual_force, nonfinite, resets, imitated_fraction, realisable, replaced, keep
    (see `correct_joints`).
  """
  motions = jnp.asarray(motions, jnp.float32)
  lengths = jnp.asarray(lengths, jnp.int32)
  # n feature rows come from n + 1 joint frames; simulate all of them.
  joints = features_lib.features_to_joints(motions, lengths, with_last_frame=True)
  corrected_joints, info = correct_joints(joints, lengths + 1, params)
  feats = jax.vmap(features_lib.joints_to_features)(
      _edge_pad(corrected_joints, lengths + 1), lengths + 1)
  keep = info["keep"]
  feats = jnp.where(keep[:, None, None] & frame_mask(lengths, motions.shape[1])[..., None],
                    jnp.nan_to_num(feats), 0.0)
  # Samples not replaced keep their exact original features (not a round trip).
  take = info["replaced"][:, None, None]
  original = jnp.where(keep[:, None, None], jnp.nan_to_num(motions), 0.0)
  return jnp.where(take, feats, original), info
