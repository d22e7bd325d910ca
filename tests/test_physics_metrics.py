"""Physical metrics on joints: each artefact moves its own metric, padding is ignored."""

from __future__ import annotations

import numpy as np
import pytest

from selfconsume.motion import skeleton
from selfconsume.physics import demo_motions
from selfconsume.physics import metrics

FRAMES = 40


@pytest.fixture(scope="module")
def standing():
  """(2, 40, 22, 3) grounded motions whose feet never move."""
  return demo_motions.make_batch(FRAMES, 2, seed=3, kinds=("stand", "squat"))


def _metrics(joints, lengths=None):
  joints = np.asarray(joints, np.float32)
  if lengths is None:
    lengths = np.full(joints.shape[0], joints.shape[1], np.int32)
  return {k: np.asarray(v) for k, v in metrics.physics_metrics(joints, lengths).items()}


def test_clean_standing_motion_is_physical(standing):
  m = _metrics(standing)
  assert m["float_mm"] == pytest.approx([0.0, 0.0], abs=1e-3)
  assert m["penetrate_mm"] == pytest.approx([0.0, 0.0], abs=1e-3)
  assert np.all(m["skate"] == 0.0)
  assert np.all(m["jerk"] < 30.0)


def test_lift_and_sink_are_float_and_penetrate_in_mm(standing):
  lifted = _metrics(demo_motions.lift(standing, 0.10))
  sunk = _metrics(demo_motions.lift(standing, -0.05))
  # The 5 mm float tolerance is subtracted.
  assert lifted["float_mm"] == pytest.approx([95.0, 95.0], abs=0.1)
  assert np.all(lifted["penetrate_mm"] == 0.0)
  assert sunk["penetrate_mm"] == pytest.approx([50.0, 50.0], abs=0.1)
  assert np.all(sunk["float_mm"] == 0.0)


def test_sliding_feet_are_skate(standing):
  m = _metrics(demo_motions.slide(standing, speed=0.6))
  assert np.all(m["skate"] > 0.95)
  slow = _metrics(demo_motions.slide(standing, speed=0.1))  # below the 0.3 m/s threshold
  assert np.all(slow["skate"] == 0.0)
  lifted = _metrics(demo_motions.lift(demo_motions.slide(standing, speed=0.6), 0.3))
  assert np.all(lifted["skate"] == 0.0)  # feet in the air are not in contact


def test_jitter_is_jerk(standing):
  clean = _metrics(standing)["jerk"]
  noisy = _metrics(demo_motions.jitter(standing, sigma=0.01))["jerk"]
  assert np.all(noisy > 10 * clean)


def test_frames_beyond_length_are_ignored(standing):
  joints = np.array(standing)
  lengths = np.array([FRAMES, 20], np.int32)
  joints[1, 20:] += np.array([0.0, 1.0, 0.0])  # garbage in the padding
  joints[1, 20:] += np.random.default_rng(0).normal(size=joints[1, 20:].shape)
  padded = _metrics(joints, lengths)
  cropped = _metrics(standing[1:, :20])
  for key in padded:
    assert padded[key][1] == pytest.approx(cropped[key][0], rel=1e-5, abs=1e-5)


def test_foot_constants_match_the_skeleton():
  # Toes rest on the floor when the foot is flat; ankles are above them.
  assert set(skeleton.FOOT_JOINTS) == {7, 8, 10, 11}
  assert np.all(metrics._FOOT_REST_HEIGHT >= 0.0)
