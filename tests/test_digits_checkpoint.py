"""The digits loop's checkpoints (experiments/mnist.py through selfconsume.checkpoint): the loop
state bit for bit, one-line refusals, a save killed midway, the msgpack files of earlier
versions. The resume of a whole run is tests/test_digits_smoke.py."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mnist
from selfconsume import checkpoint
from selfconsume import loop
from selfconsume.digits import model as model_lib
from selfconsume.digits.unet import ConditionalUNet
from selfconsume.errors import CheckpointError
from tests.test_checkpoint_roundtrip import SaveKilled, SaveKiller

IMAGE_SHAPE = (8, 8, 1)


def _loop_state(seed: int, synthetic: int) -> loop.LoopState:
  """A loop state as mnist.py builds it: a U-Net train state, real and synthetic buffers."""
  key = jax.random.PRNGKey(seed)
  model = ConditionalUNet(num_classes=10, features=4, multipliers=(1, 2))
  train_state = model_lib.create_train_state(key, model, IMAGE_SHAPE)
  images = jax.random.uniform(jax.random.fold_in(key, 1), (6,) + IMAGE_SHAPE)
  labels = jnp.arange(6, dtype=jnp.int32)
  real = loop.make_buffer({"image": images, "label": labels})
  state = loop.init_state(
      train_state, real,
      loop.empty_buffer({"image": images[:1], "label": labels[:1]}, synthetic),
      jax.random.fold_in(key, 2))
  # Parameters and moments that are not those of a fresh state, and a later generation.
  return state.replace(
      train_state=jax.tree.map(lambda a: a + jnp.asarray(0.1, a.dtype) if a.dtype.kind == "f"
                               else a, state.train_state),
      generation=jnp.asarray(3, jnp.int32))


def _assert_identical(a: Any, b: Any) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _one_line(info: pytest.ExceptionInfo, *parts: str) -> None:
  message = str(info.value)
  assert "\n" not in message and len(message) < 400, message
  for part in parts:
    assert part in message, (part, message)


@pytest.mark.parametrize("synthetic", [0, 4])   # the baseline's buffer has no slots
def test_loop_state_round_trips_bit_for_bit(tmp_path, synthetic):
  path = str(tmp_path / "checkpoints" / "run")
  assert mnist._restore_state(path, _loop_state(0, synthetic), "hash") is None
  state = _loop_state(0, synthetic)
  checkpoint.save(path, state, mnist._fingerprint("hash"), {"generation": 3}, step=3)
  restored, extra = mnist._restore_state(path, _loop_state(1, synthetic), "hash")
  _assert_identical(restored, state)
  assert extra == {"generation": 3} and int(restored.generation) == 3


def test_other_config_and_corrupt_checkpoints_are_one_line_errors(tmp_path, truncate_checkpoint):
  path = str(tmp_path / "run")
  state = _loop_state(0, 4)
  checkpoint.save(path, state, mnist._fingerprint("aaaa"), {"generation": 3}, step=3)
  with pytest.raises(CheckpointError) as info:
    mnist._restore_state(path, state, "bbbb")
  _one_line(info, path, "config_hash: checkpoint has 'aaaa', config has 'bbbb'")
  assert truncate_checkpoint(path)
  with pytest.raises(CheckpointError) as info:
    mnist._restore_state(path, state, "aaaa")
  _one_line(info, path, "truncated or corrupt")


def test_save_killed_midway_resumes_from_the_previous_generation(tmp_path, monkeypatch):
  path = str(tmp_path / "run")
  generation3 = _loop_state(0, 4)
  checkpoint.save(path, generation3, mnist._fingerprint("hash"), {"generation": 3}, step=3)
  generation4 = generation3.replace(generation=jnp.asarray(4, jnp.int32),
                                    key=jax.random.fold_in(generation3.key, 4))
  killer = SaveKiller(monkeypatch)
  killer.arm()
  with pytest.raises(SaveKilled):
    checkpoint.save(path, generation4, mnist._fingerprint("hash"), {"generation": 4}, step=4)
  killer.disarm()
  restored, extra = mnist._restore_state(path, _loop_state(1, 4), "hash")
  _assert_identical(restored, generation3)
  assert extra["generation"] == 3
  # The resumed run saves generation 4 again.
  checkpoint.save(path, generation4, mnist._fingerprint("hash"), {"generation": 4}, step=4)
  restored, _ = mnist._restore_state(path, _loop_state(1, 4), "hash")
  _assert_identical(restored, generation4)


def test_msgpack_checkpoint_of_an_earlier_version_is_refused(tmp_path):
  path = str(tmp_path / "generation0_seed0")
  with open(path + ".msgpack", "wb") as f:
    f.write(b"\x80")
  with pytest.raises(CheckpointError) as info:
    mnist._restore_state(path, _loop_state(0, 0), "hash")
  _one_line(info, "generation0_seed0.msgpack", "earlier version", "new --workdir")
