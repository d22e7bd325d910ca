"""Tests of selfconsume.checkpoint: exact resume, normalisation, incompatible configs, any
pytree bit for bit, one-line errors, a save killed midway."""

from __future__ import annotations

import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.path import atomicity
import pytest

from selfconsume import checkpoint
from selfconsume import parallel
from selfconsume.errors import CheckpointError
from selfconsume.humanml import mdm
from selfconsume.humanml import training
from tests.test_train_step import VOCAB
from tests.test_train_step import make_data
from tests.test_train_step import tiny_config


def test_save_restore_next_step_identical(tmp_path):
  config = tiny_config()
  data = make_data()
  batch = jax.tree.map(lambda a: a[:4], data)
  # Both states placed as the fits place them (committed to the device): placement is part
  # of the compiled step's cache key, so the restored state's step loads the first one's.
  state = parallel.place(training.create_train_state(config, jax.random.PRNGKey(0), VOCAB), None)
  state, _ = training.jit_train_step(state, batch, jax.random.PRNGKey(1))
  norm = {"mean": np.arange(263, dtype=np.float32), "std": np.ones(263, np.float32)}
  ckpt = training.Checkpointer(tmp_path, config, VOCAB, normalization=norm)
  assert ckpt.latest_step() is None
  with pytest.raises(CheckpointError, match="no checkpoint"):
    ckpt.restore(state)
  assert ckpt.save(state) == 1

  fresh = training.create_train_state(config, jax.random.PRNGKey(9), VOCAB)
  reopened = training.Checkpointer(tmp_path, config, VOCAB)
  assert reopened.latest_step() == 1
  restored = parallel.place(reopened.restore(fresh), None)
  assert int(restored.step) == 1
  _, m1 = training.jit_train_step(state, batch, jax.random.PRNGKey(2))
  _, m2 = training.jit_train_step(restored, batch, jax.random.PRNGKey(2))
  assert float(m1["loss"]) == float(m2["loss"])
  assert float(m1["grad_norm"]) == float(m2["grad_norm"])
  np.testing.assert_array_equal(reopened.restore_normalization()["mean"], norm["mean"])
  assert reopened.saved_config()["config"]["model"]["latent_dim"] == 32


def test_incompatible_config_is_refused(tmp_path):
  config = tiny_config()
  state = training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  training.Checkpointer(tmp_path, config, VOCAB).save(state)
  wider = tiny_config()
  wider.model.latent_dim = 64
  other = training.Checkpointer(tmp_path, wider, VOCAB)
  with pytest.raises(CheckpointError, match="model.latent_dim: checkpoint has 32, config has 64"):
    other.restore(state)
  with pytest.raises(CheckpointError, match="model.vocab_size"):
    training.Checkpointer(tmp_path, config, VOCAB + 1).restore(state)
  eps = tiny_config()
  eps.diffusion.prediction = "eps"
  with pytest.raises(CheckpointError, match="diffusion.prediction"):
    training.Checkpointer(tmp_path, eps, VOCAB).restore(state)
  with pytest.raises(CheckpointError, match="no checkpoint at step 7"):
    training.Checkpointer(tmp_path, config, VOCAB).restore(state, step=7)


# ----------------------------------------------------------------------------- crash mid-save


class SaveKilled(BaseException):
  """Stands for the process dying: not an Exception, so nothing on the way catches it."""


async def _die_before_commit(self):
  raise SaveKilled(f"killed before renaming {self.get()}")


class SaveKiller:
  """`arm()` makes orbax saves die after writing their temporary step, before the rename that
  commits it (what a kill mid-save leaves behind); `disarm()` lets them finish again."""

  def __init__(self, monkeypatch: pytest.MonkeyPatch):
    self._monkeypatch = monkeypatch

  def arm(self) -> None:
    self._monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize",
                              _die_before_commit)

  def disarm(self) -> None:
    self._monkeypatch.undo()


@pytest.fixture
def killer(monkeypatch) -> SaveKiller:
  return SaveKiller(monkeypatch)


def _step_dirs(directory) -> list[str]:
  return sorted(name for name in os.listdir(directory) if not name.startswith("_"))


def test_mdm_save_killed_midway_keeps_the_previous_step(tmp_path, killer):
  config = tiny_config()
  data = make_data()
  state = training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  state, _ = training.jit_train_step(state, jax.tree.map(lambda a: a[:4], data),
                                     jax.random.PRNGKey(1))
  ckpt = training.Checkpointer(tmp_path, config, VOCAB, max_to_keep=1)
  ckpt.save(state)
  saved_params = jax.device_get(state.params)   # the step below donates `state`'s buffers
  later, _ = training.jit_train_step(state, jax.tree.map(lambda a: a[4:], data),
                                     jax.random.PRNGKey(2))
  killer.arm()
  with pytest.raises(SaveKilled):
    ckpt.save(later)
  killer.disarm()
  assert any("tmp" in name for name in os.listdir(tmp_path))   # the half-written step 2
  reopened = training.Checkpointer(tmp_path, config, VOCAB, max_to_keep=1)
  assert reopened.latest_step() == 1
  restored = reopened.restore(training.create_train_state(config, jax.random.PRNGKey(9), VOCAB))
  _assert_identical(jax.device_get(restored.params), saved_params)
  # The next save goes through and replaces step 1.
  assert reopened.save(later) == 2 and reopened.all_steps() == [2]


def test_mdm_checkpoint_in_the_layout_written_before_the_generic_module(tmp_path):
  """Train states saved by the earlier Checkpointer (orbax items state / config / normalization,
  the fingerprint under 'describe') still restore."""
  config = tiny_config()
  state = training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  manager = ocp.CheckpointManager(
      str(tmp_path), options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
      item_names=("state", "config", "normalization"))
  arrays = {"step": state.step, "params": state.params, "opt_state": state.opt_state,
            "ema_params": state.ema_params}
  manager.save(0, args=ocp.args.Composite(
      state=ocp.args.StandardSave(arrays),
      config=ocp.args.JsonSave({"describe": mdm.checkpoint_fingerprint(config, VOCAB),
                                "config": config.to_dict(), "vocab_size": VOCAB}),
      normalization=ocp.args.StandardSave({"mean": np.zeros(263, np.float32),
                                           "std": np.ones(263, np.float32)})))
  manager.wait_until_finished()
  manager.close()
  reopened = training.Checkpointer(tmp_path, config, VOCAB)
  restored = reopened.restore(training.create_train_state(config, jax.random.PRNGKey(9), VOCAB))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params),
               jax.device_get(state.params))
  assert reopened.restore_normalization()["std"].shape == (263,)


# ----------------------------------------------------------------------------- any pytree


@flax.struct.dataclass
class _Pair:
  first: jax.Array
  second: Any


def _tree() -> dict[str, Any]:
  key = jax.random.PRNGKey(3)
  return {"pair": _Pair(jnp.arange(6, dtype=jnp.float32).reshape(2, 3) / 7,
                        {"ids": np.arange(5, dtype=np.int32), "empty": np.zeros((0, 4), np.float32)}),
          "half": jnp.linspace(0, 1, 9, dtype=jnp.bfloat16),
          "step": jnp.asarray(7, jnp.int32), "key": key,
          "optimizer": optax.adam(1e-3).init({"w": jnp.ones(3)})}


def _assert_identical(a: Any, b: Any) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()   # bit for bit


def _one_line(info: pytest.ExceptionInfo, *parts: str) -> str:
  message = str(info.value)
  assert "\n" not in message and len(message) < 400, message
  for part in parts:
    assert part in message, (part, message)
  return message


def test_any_pytree_round_trips_bit_for_bit(tmp_path):
  directory = tmp_path / "ckpt"
  tree = _tree()
  fingerprint = {"model": {"width": 8, "layers": (1, 2)}, "hash": "abc"}
  assert checkpoint.latest_step(directory) is None and not directory.exists()
  assert checkpoint.save(directory, tree, fingerprint, {"generation": 3,
                                                        "loss": np.float32(0.5)}) == 0
  template = jax.tree.map(jnp.zeros_like, tree)
  _assert_identical(checkpoint.restore(directory, template, fingerprint), tree)
  saved, extra = checkpoint.read_meta(directory)
  assert saved == {"model": {"width": 8, "layers": [1, 2]}, "hash": "abc"}
  assert extra == {"generation": 3, "loss": 0.5}
  # Without a template the arrays come back as saved (empty ones as None).
  as_saved = checkpoint.restore(directory, None, fingerprint)
  np.testing.assert_array_equal(as_saved["pair"]["second"]["ids"], tree["pair"].second["ids"])
  assert as_saved["pair"]["second"]["empty"] is None
  # A second save is a new step, the first is deleted once it is complete.
  tree2 = jax.tree.map(lambda a: a + 1 if a.dtype != jnp.uint32 else a, tree)
  assert checkpoint.save(directory, tree2, fingerprint) == 1
  assert checkpoint.latest_step(directory) == 1 and _step_dirs(directory) == ["1"]
  _assert_identical(checkpoint.restore(directory, template, fingerprint), tree2)
  with pytest.raises(CheckpointError) as info:
    checkpoint.save(directory, tree2, fingerprint, step=1)
  _one_line(info, str(directory), "step 1 is newer")


def test_missing_and_mismatching_checkpoints_are_one_line_errors(tmp_path):
  tree = {"w": np.arange(4, dtype=np.float32)}
  fingerprint = {"model": {"width": 8, "depth": 2}, "diffusion": {"steps": 100}}
  with pytest.raises(CheckpointError) as info:
    checkpoint.restore(tmp_path / "nothing", tree, fingerprint)
  _one_line(info, str(tmp_path / "nothing"), "no checkpoint")
  assert not (tmp_path / "nothing").exists()
  checkpoint.save(tmp_path / "ckpt", tree, fingerprint)
  wider = {"model": {"width": 16, "depth": 2}, "diffusion": {"steps": 50}}
  with pytest.raises(CheckpointError) as info:
    checkpoint.restore(tmp_path / "ckpt", tree, wider)
  _one_line(info, str(tmp_path / "ckpt"), "model.width: checkpoint has 8, config has 16")
  with pytest.raises(CheckpointError) as info:
    checkpoint.restore(tmp_path / "ckpt", tree, {**fingerprint, "seed": 1})
  _one_line(info, "seed: checkpoint has None, config has 1")
  with pytest.raises(CheckpointError) as info:
    checkpoint.restore(tmp_path / "ckpt", tree, fingerprint, step=4)
  _one_line(info, "no checkpoint at step 4")


def test_truncated_or_corrupt_checkpoint_is_a_one_line_error(tmp_path, truncate_checkpoint):
  tree = {"w": np.arange(4096, dtype=np.float32), "b": np.ones(3, np.int32)}
  fingerprint = {"hash": "abc"}
  checkpoint.save(tmp_path / "arrays", tree, fingerprint)
  assert truncate_checkpoint(tmp_path / "arrays", min_bytes=1000)
  with pytest.raises(CheckpointError) as info:
    checkpoint.restore(tmp_path / "arrays", tree, fingerprint)
  _one_line(info, str(tmp_path / "arrays"), "truncated or corrupt")

  checkpoint.save(tmp_path / "meta", tree, fingerprint)
  (meta,) = (tmp_path / "meta").glob("*/config/metadata")
  meta.write_text('{"describe": {"ha')
  with pytest.raises(CheckpointError) as info:
    checkpoint.restore(tmp_path / "meta", tree, fingerprint)
  _one_line(info, str(tmp_path / "meta"), "truncated or corrupt")
  with pytest.raises(CheckpointError) as info:
    checkpoint.read_meta(tmp_path / "meta")
  _one_line(info, "truncated or corrupt")


def test_save_killed_midway_keeps_the_previous_checkpoint(tmp_path, killer):
  fingerprint = {"hash": "abc"}
  first = {"w": np.arange(8, dtype=np.float32)}
  second = {"w": np.arange(8, dtype=np.float32) * 2}
  # Into a new directory: nothing appears (it is built aside and renamed when complete).
  killer.arm()
  with pytest.raises(SaveKilled):
    checkpoint.save(tmp_path / "new", first, fingerprint)
  killer.disarm()
  assert not (tmp_path / "new").exists() and checkpoint.latest_step(tmp_path / "new") is None
  checkpoint.save(tmp_path / "ckpt", first, fingerprint, step=0)
  # Over an existing checkpoint: the half-written step is ignored, the previous one restores.
  killer.arm()
  with pytest.raises(SaveKilled):
    checkpoint.save(tmp_path / "ckpt", second, fingerprint, step=1)
  killer.disarm()
  assert any("tmp" in name for name in os.listdir(tmp_path / "ckpt"))
  assert checkpoint.latest_step(tmp_path / "ckpt") == 0
  _assert_identical(checkpoint.restore(tmp_path / "ckpt", first, fingerprint), first)
  # The save is simply done again.
  assert checkpoint.save(tmp_path / "ckpt", second, fingerprint, step=1) == 1
  _assert_identical(checkpoint.restore(tmp_path / "ckpt", first, fingerprint), second)
  assert _step_dirs(tmp_path / "ckpt") == ["1"]
