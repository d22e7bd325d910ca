"""The motion loop's training runs data-parallel over all local devices with the same result."""

import json
import os
import subprocess
import sys


_SCRIPT = r"""
import json, jax, jax.numpy as jnp, numpy as np
from experiments.configs import humanml
from selfconsume import loop, motion_loop
from selfconsume.data import text

config = humanml.get_config("smoke")
vocab = text.Vocabulary.build(["a person walks forward", "a person jumps"])
model = motion_loop.MotionModel(config, vocab, np.zeros(263, np.float32), np.ones(263, np.float32))
rng = np.random.default_rng(0)
n, frames, captions, words = 16, config.data.max_frames, 2, config.text.max_len
ids = rng.integers(2, vocab.size, (n, captions, words)).astype(np.int32)
buffer = loop.make_buffer({
    "motion": jnp.asarray(rng.normal(size=(n, frames, 263)).astype(np.float32)),
    "lengths": jnp.full((n,), frames, jnp.int32),
    "text_ids": jnp.asarray(ids), "text_mask": jnp.asarray(ids > 0),
    "num_captions": jnp.full((n,), captions, jnp.int32)})
state = model.init(jax.random.PRNGKey(0))
state, metrics = model.fit(state, buffer, jax.random.PRNGKey(1), 20)
print(json.dumps({"devices": jax.device_count(), "mesh": model.mesh is not None,
                  "loss": metrics["train_loss"], "step": int(state.step)}))
"""


def _run(repo_root, devices: int) -> dict:
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_fit_is_data_parallel_and_matches_one_device(repo_root):
  one = _run(repo_root, 1)
  four = _run(repo_root, 4)
  assert not one["mesh"] and four["mesh"] and four["devices"] == 4
  assert one["step"] == four["step"] == 20
  assert abs(one["loss"] - four["loss"]) < 1e-3 * max(1.0, abs(one["loss"]))
