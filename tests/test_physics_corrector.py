"""The physics corrector on a batch of 8 short procedural motions (one compiled rollout).

The batch mixes clean motions, the four injected artefacts and a broken (NaN) motion; every
test reads the same module-scoped simulation, so the rollout compiles once, at shape 8 x 41
(the smoke preset's 40 feature rows + 1: the motion tests' host-side corrections load the
same compiled program).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selfconsume.data import procedural
from selfconsume.motion import features as features_lib
from selfconsume.physics import corrector
from selfconsume.physics import demo_motions
from selfconsume.physics import metrics
from selfconsume.physics import rollout
from selfconsume.physics.params import CorrectorParams

FRAMES = 41               # joint frames = 40 feature rows + 1
STILL_FEET = ("wave", "raise_arms", "punch", "bow")
CLEAN, LIFT, SINK, SLIDE, JITTER, NAN = (0, 1, 6), 2, 3, 4, 5, 7


def _pick(rng: np.random.Generator, families, count: int) -> list[np.ndarray]:
  out = []
  while len(out) < count:
    joints, _, fams = procedural.sample_motion(rng)
    if len(fams) == 1 and fams[0] in families and len(joints) >= FRAMES:
      out.append(joints[:FRAMES])
  return out


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(7)
  clean = _pick(rng, ("walk", "wave", "turn", "raise_arms"), 3)
  still = _pick(rng, STILL_FEET, 4)
  joints = np.zeros((8, FRAMES, 22, 3), np.float32)
  joints[list(CLEAN)] = np.stack(clean)
  joints[LIFT] = demo_motions.lift(still[0], 0.10)
  joints[SINK] = demo_motions.lift(still[1], -0.05)
  joints[SLIDE] = demo_motions.slide(still[2], speed=0.6)
  joints[JITTER] = demo_motions.jitter(still[3], sigma=0.015)
  joints[NAN] = np.nan
  lengths = np.full((8,), FRAMES, np.int32)
  return joints, lengths


@pytest.fixture(scope="module")
def params():
  return CorrectorParams(refine_iterations=0)


@pytest.fixture(scope="module")
def corrected(batch, params):
  joints, lengths = batch
  return corrector.correct_joints(joints, lengths, params)


def _metric(joints, lengths, name):
  return np.asarray(metrics.physics_metrics(jnp.nan_to_num(joints), lengths)[name])


@pytest.mark.parametrize("row,name", [(LIFT, "float_mm"), (SINK, "penetrate_mm"),
                                      (SLIDE, "skate"), (JITTER, "jerk")])
def test_correction_cuts_each_artefact_by_80_percent(batch, corrected, row, name):
  joints, lengths = batch
  out, _ = corrected
  before = _metric(joints, lengths, name)[row]
  after = _metric(out, lengths, name)[row]
  assert before > 0
  assert after <= 0.2 * before, f"{name}: {before:.3f} -> {after:.3f}"


def test_clean_motions_pass_nearly_unchanged(batch, corrected):
  joints, _ = batch
  out, info = corrected
  rows = list(CLEAN)
  error = np.linalg.norm(np.asarray(out)[rows] - joints[rows], axis=-1).mean()
  assert error < 0.03
  assert not np.any(np.asarray(info["fell"])[rows])
  # The fail-safe never resets a clean motion, nor a floating, sinking or jittery one. (The
  # sliding one drifts 1.4 m while its planted feet hold the body back, so it may be reset.)
  followable = rows + [LIFT, SINK, JITTER]
  np.testing.assert_array_equal(np.asarray(info["resets"])[followable], 0)
  np.testing.assert_array_equal(np.asarray(info["imitated_fraction"])[followable], 1.0)
  np.testing.assert_allclose(np.asarray(info["tracking_error_m"])[rows],
                             np.linalg.norm(np.asarray(out)[rows] - joints[rows], axis=-1)
                             .mean(axis=(1, 2)), atol=1e-4)


def test_nonfinite_simulation_is_flagged_and_never_returned(corrected):
  out, info = corrected
  assert bool(jnp.all(jnp.isfinite(out)))
  nonfinite = np.asarray(info["nonfinite"])
  assert nonfinite[NAN] and not np.any(np.delete(nonfinite, NAN))
  # Its input was broken too, so there is nothing to keep: it is dropped (zeros).
  assert not bool(info["keep"][NAN]) and bool(jnp.all(out[NAN] == 0))
  assert np.all(np.delete(np.asarray(info["keep"]), NAN))


def test_host_calls_load_one_compiled_rollout_however_their_inputs_are_placed(
    batch, params, corrected):
  """The floor corrects NumPy test motions, the diagnostics a jitted sampler's (committed)
  output: both run the same compiled rollout, with the same result."""
  joints, lengths = batch
  committed = jax.device_put(joints, jax.local_devices()[0])
  out, info = corrector.correct_joints(committed, lengths, params)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(corrected[0]))
  np.testing.assert_array_equal(np.asarray(info["resets"]), np.asarray(corrected[1]["resets"]))
  compiled = rollout._compiled(rollout.static_part(params))  # pylint: disable=protected-access
  assert compiled._cache_size() == 1  # pylint: disable=protected-access


def test_refinement_lowers_tracking_error(batch, params):
  joints, lengths = batch
  rows = list(CLEAN) + [JITTER]
  refined = dataclasses.replace(params, refine_iterations=2)
  _, info = corrector.correct_joints(joints, lengths, refined)
  plain = np.asarray(info["tracking_error_unrefined_m"])[rows]
  after = np.asarray(info["tracking_error_m"])[rows]
  assert np.all(after <= plain + 1e-6)
  assert after.mean() < plain.mean()


def test_gradient_refinement_lowers_tracking_error(batch, params):
  """Adam on PD-target offsets through the simulation (truncated windows) beats plain PD.

  At the default gains plain PD already tracks these motions to 1-3 cm and the gradient's
  gain is a few percent (2.8% on one CPU, 4.6% on another: the window gradients through 50
  stiff contact substeps are rounding-sensitive), so there it must only never lose and win
  somewhere. With the PD stiffness at 0.3x (a runtime input: same compiled programs) the
  controller lags and the offsets have a lag to remove: there they must cut it clearly.
  """
  joints, lengths = batch
  rows = list(CLEAN) + [JITTER]
  refined = dataclasses.replace(params, refine_method="gradient", refine_iterations=3)
  out, info = corrector.correct_joints(joints, lengths, refined)
  plain = np.asarray(info["tracking_error_unrefined_m"])[rows]
  after = np.asarray(info["tracking_error_m"])[rows]
  assert np.all(after <= plain + 1e-6)
  assert after.mean() < plain.mean(), (plain, after)
  _, lagging = corrector.correct_joints(joints, lengths,
                                        dataclasses.replace(refined, stiffness=0.3))
  lag_plain = np.asarray(lagging["tracking_error_unrefined_m"])[rows]
  lag_after = np.asarray(lagging["tracking_error_m"])[rows]
  assert np.all(lag_plain > plain), (plain, lag_plain)
  assert np.all(lag_after < lag_plain), (lag_plain, lag_after)
  assert lag_after.mean() < 0.9 * lag_plain.mean(), (lag_plain, lag_after)
  assert bool(jnp.all(jnp.isfinite(out)))
  assert bool(info["nonfinite"][NAN]) and not bool(info["keep"][NAN])


def test_correct_on_features_follows_the_contract(batch, params):
  joints, lengths = batch
  rows = np.array(list(CLEAN) + [SLIDE, JITTER, LIFT, SINK, NAN])
  feats = np.array(features_lib.batch_joints_to_features(
      jnp.nan_to_num(jnp.asarray(joints[rows])), jnp.asarray(lengths)))
  feats[-1] = np.nan
  rows = FRAMES - 1
  rows_valid = np.array([rows] * 6 + [rows - 8, rows], np.int32)
  feats[6, rows - 8:] = 0.0
  out, info = corrector.correct(feats, rows_valid, params)
  assert out.shape == feats.shape and out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))
  assert bool(jnp.all(out[6, rows - 8:] == 0))
  for key in ("tracking_error_m", "fell", "residual_force", "nonfinite", "replaced", "keep",
              "resets", "imitated_fraction", "realisable"):
    assert info[key].shape == (8,)
  assert bool(info["nonfinite"][-1]) and not bool(info["keep"][-1])
  # Clean motions come back close to where they were (in the features' canonical frame).
  before = features_lib.features_to_joints(jnp.asarray(feats[:3]), rows_valid[:3])
  after = features_lib.features_to_joints(out[:3], rows_valid[:3])
  assert float(jnp.linalg.norm(after - before, axis=-1).mean()) < 0.05

  # Every finite motion comes back corrected: mixing (gamma) is the loop's, not the corrector's.
  np.testing.assert_array_equal(np.asarray(info["replaced"]), [True] * 7 + [False])
