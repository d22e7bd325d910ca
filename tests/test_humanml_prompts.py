"""The loop's prompts: (motion, caption) pairs of the real buffer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume import loop
from selfconsume.humanml import data as data_lib


def _real_buffer():
  num_captions = jnp.array([3, 1, 2, 2], jnp.int32)
  data = {"text_ids": jnp.ones((4, 3, 5), jnp.int32), "num_captions": num_captions,
          "lengths": jnp.full((4,), 40, jnp.int32)}
  # The last motion is an empty slot: its captions are not prompts.
  return loop.make_buffer(data, valid=jnp.array([True, True, True, False]))


def test_num_prompts_counts_the_pairs_draw_prompts_can_draw():
  real = _real_buffer()
  assert data_lib.num_prompts(real) == 6
  rows, slots = data_lib.draw_prompts(jax.random.PRNGKey(0), real, data_lib.num_prompts(real))
  rows, slots = np.asarray(rows), np.asarray(slots)
  pairs = set(zip(rows.tolist(), slots.tolist()))
  assert len(pairs) == 6                                   # without replacement
  assert all(real.valid[r] and s < real.data["num_captions"][r] for r, s in pairs)
