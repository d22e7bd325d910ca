"""The corrector's fail-safe: an imitation that fails is reset to the reference and goes on.

Eight motions x 41 frames (the compiled shape of test_physics_corrector, so the rollout is
compiled once for both): clean demo motions and standing motions whose reference is knocked
off by something no body can follow (a 1.5 m teleport, the root dashing at 8 m/s). Every
test reads the same module-scoped simulations; failsafe='none' is a runtime setting of the
same compiled rollout. The same shape serves the glitch filter's tests: squats whose pose
jumps to standing height for single frames, corrected with and without the filter.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import humanml as humanml_config
from selfconsume import errors
from selfconsume import loop
from selfconsume.humanml import generation
from selfconsume.motion import features as features_lib
from selfconsume.physics import corrector
from selfconsume.physics import demo_motions
from selfconsume.physics import metrics
from selfconsume.physics import params as params_lib

FRAMES = 41
EVENT = 15          # the frame the knocked references go wrong
SETTLED = 25        # from here on, the reference stands still again
CLEAN = (0, 1, 2, 7)
KNOCKED = (3, 4, 5, 6)


def _knocked(base: np.ndarray) -> list[np.ndarray]:
  """References that leave a standing body behind at frame EVENT."""
  t = np.arange(FRAMES)
  teleport = base.copy()
  teleport[EVENT:, :, 0] += 1.5                                # 1.5 m sideways at once
  dash = base.copy()
  dash[:, :, 2] += (np.clip(t - EVENT, 0, 5) * 0.4)[:, None]    # 8 m/s for 5 frames
  shove = base.copy()
  shove[:, :, 0] += (np.clip(t - EVENT, 0, 3) * 0.4)[:, None]   # 8 m/s for 3 frames
  leap = base.copy()
  leap[:, :, 2] += (np.clip(t - EVENT, 0, 5) * 0.25)[:, None]   # 5 m/s for 5 frames
  return [teleport, dash, shove, leap]


@pytest.fixture(scope="module")
def batch():
  joints = np.zeros((8, FRAMES, 22, 3), np.float32)
  joints[0] = demo_motions.make_motion("squat", FRAMES, 1)
  joints[1] = demo_motions.make_motion("stand", FRAMES, 2)
  joints[2] = demo_motions.make_motion("squat", FRAMES, 4)
  joints[7] = demo_motions.make_motion("stand", FRAMES, 5)
  joints[list(KNOCKED)] = np.stack(_knocked(demo_motions.make_motion("stand", FRAMES, 3)))
  return joints, np.full((8,), FRAMES, np.int32)


@pytest.fixture(scope="module")
def params():
  return params_lib.CorrectorParams(refine_iterations=0)


@pytest.fixture(scope="module")
def runs(batch, params):
  joints, lengths = batch
  return {mode: corrector.correct_joints(joints, lengths,
                                         dataclasses.replace(params, failsafe=mode))
          for mode in ("reset", "none")}


@pytest.fixture(scope="module")
def strict_runs(batch, params):
  """correct_joints under every unrealisable-motion policy, any reset making a motion
  unrealisable (failsafe_min_imitated = 1): {policy: (out, info)}, and under 'strict'
  the settings."""
  joints, lengths = batch
  strict = dataclasses.replace(params, failsafe_min_imitated=1.0)
  runs = {policy: corrector.correct_joints(
      joints, lengths, dataclasses.replace(strict, failsafe_unrealisable=policy))
          for policy in params_lib.UNREALISABLE_POLICIES}
  return dict(runs, strict=strict)


def _pelvis_gap(out, joints) -> np.ndarray:
  """(B,) largest pelvis-height difference (m) between output and reference."""
  return np.abs(np.asarray(out)[:, :, 0, 1] - joints[:, :, 0, 1]).max(axis=1)


def _settled_error(out, joints) -> np.ndarray:
  """(B,) mean joint distance (m) to the reference once it stands still again."""
  return np.linalg.norm(np.asarray(out)[:, SETTLED:] - joints[:, SETTLED:], axis=-1).mean((1, 2))


def test_knocked_off_imitation_is_reset_and_goes_on(batch, runs):
  joints, _ = batch
  out, info = runs["reset"]
  rows = list(KNOCKED)
  resets = np.asarray(info["resets"])[rows]
  assert info["resets"].dtype == np.int32
  assert np.all(resets > 0), resets
  # No fallen body comes back: the pelvis stays at the reference's height on every frame,
  # and the body is back on the reference once the reference is reachable again.
  assert np.all(_pelvis_gap(out, joints)[rows] < 0.2), _pelvis_gap(out, joints)
  assert np.all(_settled_error(out, joints)[rows] < 0.05), _settled_error(out, joints)
  assert not np.any(np.asarray(info["fell"])[rows])
  np.testing.assert_allclose(np.asarray(info["imitated_fraction"])[rows],
                             1.0 - resets / FRAMES, rtol=1e-6)
  assert np.all(np.asarray(info["replaced"]))  # kept as corrected (the paper's choice)


def test_without_the_failsafe_the_same_motions_fall(batch, runs):
  joints, _ = batch
  out, info = runs["none"]
  rows = list(KNOCKED)
  assert not np.any(np.asarray(info["resets"]))
  np.testing.assert_array_equal(np.asarray(info["imitated_fraction"]), 1.0)
  assert np.all(np.asarray(info["fell"])[rows])
  assert np.all(_pelvis_gap(out, joints)[rows] > 0.3)


def test_clean_motions_are_never_reset_and_tracked_as_without_failsafe(runs):
  out, info = runs["reset"]
  out_none, _ = runs["none"]
  rows = list(CLEAN)
  np.testing.assert_array_equal(np.asarray(info["resets"])[rows], 0)
  np.testing.assert_array_equal(np.asarray(info["imitated_fraction"])[rows], 1.0)
  assert np.all(np.asarray(info["realisable"])[rows])
  assert not np.any(np.asarray(info["fell"])[rows])
  np.testing.assert_allclose(np.asarray(out)[rows], np.asarray(out_none)[rows], atol=1e-6)


def test_ilc_refinement_keeps_the_failsafe(batch, params):
  """Refinement reruns the same rollout; a pass only wins with no more resets."""
  joints, lengths = batch
  refined = dataclasses.replace(params, refine_iterations=2)
  out, info = corrector.correct_joints(joints, lengths, refined)
  rows = list(KNOCKED)
  assert np.all(np.asarray(info["resets"])[rows] > 0)
  assert not np.any(np.asarray(info["fell"])[rows])
  assert np.all(_pelvis_gap(out, joints)[rows] < 0.2)
  clean = list(CLEAN)
  np.testing.assert_array_equal(np.asarray(info["resets"])[clean], 0)
  assert np.all(np.asarray(info["tracking_error_m"])[clean]
                <= np.asarray(info["tracking_error_unrefined_m"])[clean] + 1e-6)


def test_runs_are_ranked_by_resets_then_error():
  better = corrector._fewer_resets_or_lower_error(  # pylint: disable=protected-access
      resets=np.array([0, 1, 1, 2, 0]), error=np.array([0.30, 0.01, 0.10, 0.01, np.nan]),
      best_resets=np.array([1, 1, 1, 1, 0]), best_error=np.array([0.01, 0.05, 0.05, 0.5, 0.1]))
  np.testing.assert_array_equal(better, [True, True, False, False, False])


def test_unrealisable_motions_can_be_returned_uncorrected(batch, strict_runs):
  """With failsafe_min_imitated above the knocked motions' share of imitated frames, they
  are flagged not realisable; 'original' returns them uncorrected, 'keep' corrected."""
  joints, _ = batch
  out, info = strict_runs["original"]
  realisable = np.asarray(info["realisable"])
  np.testing.assert_array_equal(realisable, np.asarray(info["resets"]) == 0)
  assert not np.any(realisable[list(KNOCKED)])
  np.testing.assert_array_equal(np.asarray(info["replaced"]), realisable)
  np.testing.assert_array_equal(np.asarray(out)[list(KNOCKED)], joints[list(KNOCKED)])


def test_unrealisable_motions_can_be_dropped(strict_runs):
  """'drop': a motion that needed a reset comes back as nothing (zeros, keep False); the
  others exactly as under 'original'."""
  kept, kept_info = strict_runs["original"]
  out, info = strict_runs["drop"]
  realisable = np.asarray(info["realisable"])
  assert not np.any(realisable[list(KNOCKED)]) and np.all(realisable[list(CLEAN)])
  np.testing.assert_array_equal(np.asarray(info["keep"]), realisable)
  np.testing.assert_array_equal(np.asarray(info["replaced"]), realisable)
  assert np.all(np.asarray(out)[list(KNOCKED)] == 0.0)
  np.testing.assert_array_equal(np.asarray(out)[list(CLEAN)], np.asarray(kept)[list(CLEAN)])
  assert np.all(np.asarray(kept_info["keep"]))


def test_blend_weight_hands_over_between_a_quarter_and_half_the_threshold():
  weight = np.asarray(corrector.blend_weight(jnp.array([0.0, 0.1, 0.125, 0.1875, 0.25, 0.6]),
                                             0.5))
  np.testing.assert_allclose(weight, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def _steps(joints: np.ndarray) -> np.ndarray:
  """(B, F - 1) mean joint displacement (m) from each frame to the next."""
  return np.linalg.norm(np.diff(np.asarray(joints, np.float64), axis=1), axis=-1).mean(-1)


def test_blend_keeps_every_motion_and_hides_the_resets(batch, strict_runs):
  """'blend': the knocked motions are kept (nothing dropped), and where 'keep' jumps back onto
  the reference at a reset, the blended motion has already handed over to it: its step into
  a reset frame is the reference's own step there, not a teleport. Realisable motions come
  back exactly as 'keep' simulates them."""
  joints, lengths = batch
  strict = strict_runs["strict"]
  kept, info = strict_runs["keep"]
  blended, blend_info = strict_runs["blend"]
  _, _, (reference, error) = corrector._simulate(  # pylint: disable=protected-access
      jnp.asarray(joints), jnp.asarray(lengths), strict)
  reference, error = np.asarray(reference), np.asarray(error)
  np.testing.assert_array_equal(np.asarray(blend_info["keep"]), True)
  np.testing.assert_array_equal(np.asarray(blend_info["replaced"]), True)
  clean = list(CLEAN)
  np.testing.assert_array_equal(np.asarray(blended)[clean], np.asarray(kept)[clean])
  jumps_keep, jumps_blend = [], []
  for row in KNOCKED:
    # The steps into the frames a reset fired on (pre-reset error above the threshold).
    frames = np.flatnonzero(error[row, 1:] > strict.failsafe_threshold_m)
    assert len(frames), row
    own = _steps(reference[row][None])[0][frames]
    jumps_keep.append(_steps(np.asarray(kept)[row][None])[0][frames] - own)
    jumps_blend.append(_steps(np.asarray(blended)[row][None])[0][frames] - own)
  jumps_keep, jumps_blend = np.concatenate(jumps_keep), np.concatenate(jumps_blend)
  assert np.all(jumps_keep > 0.1), jumps_keep          # the teleports 'keep' returns
  assert np.all(jumps_blend < 0.05), jumps_blend       # gone: the reference's own step
  assert np.all(np.asarray(info["resets"])[list(KNOCKED)] > 0)


class _RawFeatures:
  """A motion model's normalisation as the identity: the loop's correction sees raw features."""

  def normalize(self, motions, lengths):
    del lengths
    return motions

  def denormalize(self, motions, lengths):
    del lengths
    return motions


def test_dropped_motions_leave_the_loops_training_data(batch, params):
  """The motion loop's correct stage under 'drop': the knocked motions (drawn for correction,
  gamma = inf) become invalid slots of the synthetic buffer, which the fit never draws;
  the clean ones stay, corrected."""
  joints, lengths = batch
  rows = jnp.asarray(lengths - 1)
  motions = features_lib.batch_joints_to_features(jnp.asarray(joints), jnp.asarray(lengths))
  config = humanml_config.get_config("smoke")
  config.correction.physics = ml_collections.ConfigDict(dataclasses.asdict(dataclasses.replace(
      params, failsafe_min_imitated=1.0, failsafe_unrealisable="drop")))
  _, correct_fn, _ = generation.loop_stages(config, _RawFeatures(), int(config.loop.sizes[0]))
  synthetic = loop.make_buffer({"motion": motions, "lengths": rows})
  out, scores = correct_fn(jax.random.PRNGKey(0), synthetic)
  valid = np.asarray(out.valid)
  assert not np.any(valid[list(KNOCKED)]) and np.all(valid[list(CLEAN)])
  assert float(scores["dropped_fraction"]) == pytest.approx(len(KNOCKED) / len(valid))
  assert float(scores["corrected_fraction"]) == pytest.approx(len(CLEAN) / len(valid))
  drawn = loop.draw_batch(jax.random.PRNGKey(1), out, 64)["motion"]
  clean = np.asarray(out.data["motion"])[list(CLEAN)]
  assert all(np.any(np.all(np.asarray(m) == clean, axis=(1, 2))) for m in drawn)


@pytest.mark.parametrize("field,value", [("failsafe", "stop"), ("failsafe_threshold_m", 0.0),
                                         ("failsafe_min_imitated", 1.5),
                                         ("failsafe_unrealisable", "discard"),
                                         ("fall_height_ratio", 0.0), ("fall_min_drop_m", -1.0),
                                         ("reference_median_frames", 4),
                                         ("reference_median_frames", 0),
                                         ("reference_glitch_m", -0.1)])
def test_failsafe_and_glitch_filter_settings_are_validated(field, value):
  with pytest.raises(errors.ConfigError, match=field):
    params_lib.from_config({field: value})


def _with_glitches(base: np.ndarray) -> np.ndarray:
  """A squat whose pose jumps to its standing pose for single frames while it is low (what
  MDM samples do: a crouching pelvis at standing height for one frame, then back)."""
  out = base.copy()
  pelvis = base[:, 0, 1]
  picks: list[int] = []
  for frame in sorted(np.argsort(pelvis)[:FRAMES // 3]):
    if 2 <= frame < FRAMES - 2 and all(abs(frame - p) >= 6 for p in picks):
      picks.append(int(frame))
  assert len(picks) >= 2
  out[picks] = base[np.argmax(pelvis)]
  return out


@pytest.fixture(scope="module")
def glitch_runs(params):
  """Rows 0-3: squats with one-frame glitches; rows 4-7: the same squats without. Corrected
  with the glitch filter (the default) and without it (reference_median_frames=1)."""
  joints = np.zeros((8, FRAMES, 22, 3), np.float32)
  for row in range(4):
    joints[4 + row] = demo_motions.make_motion("squat", FRAMES, 10 + row)
    joints[row] = _with_glitches(joints[4 + row])
  lengths = np.full((8,), FRAMES, np.int32)
  return joints, {width: corrector.correct_joints(
      joints, lengths, dataclasses.replace(params, reference_median_frames=width))
                  for width in (params.reference_median_frames, 1)}


def test_one_frame_glitches_are_not_imitated(glitch_runs):
  joints, runs = glitch_runs
  lengths = np.full((len(joints),), FRAMES, np.int32)
  jerk = lambda out: np.asarray(metrics.physics_metrics(out, lengths)["jerk"])
  filtered, raw = (np.asarray(runs[width][0]) for width in sorted(runs, reverse=True))
  glitched, clean = slice(0, 4), slice(4, 8)
  # The filter leaves clean motion exactly as it was...
  np.testing.assert_allclose(filtered[clean], raw[clean], atol=1e-6)
  # ...and the glitched squats come out as their clean versions do (within millimetres),
  # while a humanoid that tracks the glitches is kicked by them.
  gap = lambda out: np.linalg.norm(out[glitched] - out[clean], axis=-1).mean(axis=(1, 2))
  assert np.all(gap(filtered) < 0.005), gap(filtered)
  assert np.all(gap(filtered) < 0.5 * gap(raw)), (gap(filtered), gap(raw))
  assert np.all(jerk(filtered)[glitched] < jerk(raw)[glitched])

