"""Data parallelism: the same loss and update on 1 and 4 (fake CPU) devices; inputs placed
alike whether computed or restored."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from selfconsume import checkpoint
from selfconsume import parallel
from selfconsume.errors import ConfigError

_SCRIPT = r'''
import json
import jax
import numpy as np
from selfconsume import parallel
from selfconsume.humanml import training
from tests.test_train_step import VOCAB, draw, make_data, tiny_config

assert jax.device_count() == 4, jax.devices()
config = tiny_config(ema_decay=0.0)
fresh = lambda: training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)  # train() donates
mesh = parallel.make_mesh()
assert len(parallel.shard_batch(make_data(8), mesh)["motion"].sharding.device_set) == 4
# The fused training loop on one device and data parallel over four.
t1, h1 = training.train(jax.device_put(fresh(), jax.devices()[0]), make_data(8), draw, 10,
                        jax.random.PRNGKey(4), steps_per_call=5, log_every=5, progress=False)
t4, h4 = training.train(fresh(), make_data(8), draw, 10, jax.random.PRNGKey(4), steps_per_call=5,
                        log_every=5, progress=False, mesh=mesh)
diff = max(float(np.abs(a - b).max()) for a, b in
           zip(jax.tree.leaves(jax.device_get(t1.params)), jax.tree.leaves(jax.device_get(t4.params))))
print(json.dumps({"hist1": [h["loss"] for h in h1], "hist4": [h["loss"] for h in h4],
                  "gn1": [h["grad_norm"] for h in h1], "gn4": [h["grad_norm"] for h in h4],
                  "param_diff": diff,
                  "ndev_params": len(jax.tree.leaves(t4.params)[0].sharding.device_set)}))
'''


def test_same_loss_on_one_and_four_devices(repo_root, tmp_path):
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=str(repo_root), JAX_PLATFORMS="cpu")
  script = tmp_path / "mesh.py"
  script.write_text(_SCRIPT)
  proc = subprocess.run([sys.executable, str(script)], cwd=repo_root, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["hist1"] == pytest.approx(out["hist4"], rel=1e-4)
  assert out["gn1"] == pytest.approx(out["gn4"], rel=1e-3)
  # Adam divides by sqrt(v): float-level differences in near-zero gradient entries become
  # update differences up to ~lr; 10 steps at lr 3e-3 stay far below 10 * lr = 0.03.
  assert out["param_diff"] < 5e-3
  assert out["ndev_params"] == 4


def test_batch_must_split_over_devices():
  mesh = parallel.make_mesh()
  parallel.check_batch_size(8, mesh)  # one CPU device here: anything splits
  with pytest.raises(ConfigError, match="divisible"):
    parallel.check_batch_size(6, parallel.make_mesh(list(mesh.devices.flat) * 4))


def test_computed_and_restored_inputs_compile_to_one_program(tmp_path):
  """A restored checkpoint's arrays are committed to the device, computed ones are not; placed,
  both give one compiled program (one persistent-cache key), so a resumed run reuses it."""
  computed = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.zeros((), jnp.int32)}
  checkpoint.save(str(tmp_path / "state"), computed, {"run": "a"})
  restored = checkpoint.restore(str(tmp_path / "state"), computed, {"run": "a"})
  program = jax.jit(lambda tree: tree["w"] * 2.0 + tree["step"])
  text = lambda tree: program.lower(tree).as_text()  # noqa: E731
  assert not computed["w"].committed and restored["w"].committed
  assert text(computed) != text(restored)  # what a resumed run used to compile anew
  placed = [parallel.place(tree, None) for tree in (computed, restored)]
  assert all(leaf.committed for tree in placed for leaf in jax.tree.leaves(tree))
  assert text(placed[0]) == text(placed[1])
