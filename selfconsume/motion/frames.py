"""Which frames of a padded batch of motions are real: the one mask every module uses.

Motions of different lengths travel padded to a fixed number of frames (fixed shapes compile
once); every mean, loss and feature over frames weighs them with this mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def frame_mask(lengths: jax.Array, num_frames: int, offset: int = 0) -> jax.Array:
  """Bool mask of the frames t (counted from `offset`) with t < length.

  Args:
    lengths: (batch,) frame counts, or one scalar count.
    num_frames: padded length of the motions.
    offset: the mask covers frames offset .. num_frames - 1 (for differences: 1 for
      velocities, 3 for jerk).

  Returns:
    (batch, num_frames - offset) bool, or (num_frames - offset,) for a scalar length.
  """
  t = jnp.arange(num_frames - offset) + offset
  return t < jnp.asarray(lengths)[..., None]
