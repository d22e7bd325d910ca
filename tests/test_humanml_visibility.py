"""benchmarks.humanml_visibility: the flaws it adds are the size it says, and its FID
difference is paired (the end-to-end run is in test_humanml_smoke, on the smoke run's
evaluator)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import humanml_visibility
from selfconsume.motion import skeleton


def _still(batch: int = 3, frames: int = 60) -> np.ndarray:
  return np.tile(skeleton.rest_pose()[None, None], (batch, frames, 1, 1)).astype(np.float64)


def test_flaws_have_the_size_they_are_named_by_and_spare_padding():
  joints, lengths = _still(), np.array([60, 40, 20])
  rng = np.random.default_rng(0)
  bob = humanml_visibility.add_flaw(joints, lengths, "bob", 0.02, rng) - joints
  assert np.allclose(bob[..., [0, 2]], 0.0)
  assert abs(bob[0, :, 0, 1].max() - 0.02) < 1e-3 and abs(bob[0, :, 0, 1].min() + 0.02) < 1e-3
  drift = humanml_visibility.add_flaw(joints, lengths, "drift", 0.3, rng) - joints
  speed = np.diff(drift[0, :, 5, 0]) * skeleton.FPS
  np.testing.assert_allclose(speed, 0.3, rtol=1e-9)
  jitter = humanml_visibility.add_flaw(joints, lengths, "jitter", 0.01, rng) - joints
  assert abs(jitter[0].std() - 0.01) < 5e-4
  for flawed in (bob, drift, jitter):   # frames beyond a motion's length are left alone
    assert np.all(flawed[1, 40:] == 0.0) and np.all(flawed[2, 20:] == 0.0)
  with pytest.raises(ValueError, match="flaw"):
    humanml_visibility.add_flaw(joints, lengths, "wobble", 0.1, rng)


def test_fid_difference_is_paired():
  rng = np.random.default_rng(1)
  real = rng.normal(size=(300, 4))
  plain = rng.normal(size=(200, 4))
  fid, gap, ci = humanml_visibility.fid_difference(plain, plain, real, rng, draws=50)
  assert gap == 0.0 and ci == 0.0 and fid > 0.0
  _, shifted_gap, shifted_ci = humanml_visibility.fid_difference(plain + 0.5, plain, real, rng,
                                                                 draws=50)
  assert shifted_gap > 0.5 and 0.0 < shifted_ci < shifted_gap
