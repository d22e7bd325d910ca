"""The motion loop's training, and its whole fused generation (sampling sharded over the
motions, fitting over the batch), run data-parallel over all local devices with the same
result as on one device."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest


_SCRIPT = r"""
import json, os, sys, jax, jax.numpy as jnp, numpy as np
from jax.experimental import multihost_utils
if len(sys.argv) > 1:  # one of two processes on this host, 2 CPU devices each
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2,
                             process_id=int(sys.argv[1]))
fetch = lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True))
from experiments.configs import humanml
from selfconsume import loop, parallel
from selfconsume.data import text
from selfconsume.humanml import generation as generation_lib
from selfconsume.humanml import model as model_lib

config = humanml.get_config("smoke")
config.loop.sizes, config.train.generation_steps = (16,), (10,)
vocab = text.Vocabulary.build(["a person walks forward", "a person jumps"])
model = model_lib.MotionModel(config, vocab, np.zeros(263, np.float32), np.ones(263, np.float32))
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
sample_fn, correct_fn, fit_fn = generation_lib.loop_stages(config, model, n)
generation = loop.make_generation(variant="self_consuming", sample_fn=sample_fn,
                                  correct_fn=correct_fn, fit_fn=fit_fn)
synthetic = loop.empty_buffer(jax.tree.map(lambda x: x[:1], buffer.data), n)
loop_state = loop.init_state(state, buffer, synthetic, jax.random.PRNGKey(2))
if model.mesh is not None:
  loop_state = parallel.replicate(loop_state, model.mesh)
loop_state, gen_metrics, sampled = generation(loop_state)
print("RESULT " + json.dumps({
    "devices": jax.device_count(), "processes": jax.process_count(),
    "mesh": model.mesh is not None, "loss": metrics["train_loss"], "step": int(state.step),
    "gen_loss": float(np.mean(fetch(gen_metrics["fit_losses"]))),
    "gen_step": int(fetch(loop_state.train_state.step)),
    "sampled": fetch(sampled.data["motion"])[:, :4, :8].tolist()}))
"""


def _run(repo_root, devices: int) -> dict:
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + f" --xla_force_host_platform_device_count={devices}"}
  result = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return _result(result.stdout)


def _result(stdout: str) -> dict:
  line = next(l for l in stdout.splitlines() if l.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_device(repo_root) -> dict:
  return _run(repo_root, 1)


def test_fit_and_fused_generation_are_data_parallel_and_match_one_device(repo_root, one_device):
  one = one_device
  four = _run(repo_root, 4)
  assert not one["mesh"] and four["mesh"] and four["devices"] == 4
  assert one["step"] == four["step"] == 20
  assert abs(one["loss"] - four["loss"]) < 1e-3 * max(1.0, abs(one["loss"]))
  # The fused generation: the same samples (prompts, keys and batches do not depend on the
  # device count) and the same fine-tuning.
  assert one["gen_step"] == four["gen_step"] == 30
  np.testing.assert_allclose(four["sampled"], one["sampled"], atol=1e-3)
  assert abs(one["gen_loss"] - four["gen_loss"]) < 1e-3 * max(1.0, abs(one["gen_loss"]))


def test_fused_generation_over_two_processes_matches_one_device(repo_root, one_device):
  # jax.distributed on localhost: two CPU processes of two devices each, one 4-device mesh
  # (what several hosts of an accelerator pod look like to the code).
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + " --xla_force_host_platform_device_count=2"}
  address = f"127.0.0.1:{_free_port()}"
  workers = [subprocess.Popen([sys.executable, "-c", _SCRIPT, str(i), address], cwd=repo_root,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
  outputs = [w.communicate(timeout=600) for w in workers]
  for worker, (_, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
  results = [_result(out) for out, _ in outputs]
  one = one_device
  for two in results:
    assert two["processes"] == 2 and two["devices"] == 4 and two["mesh"]
    assert two["gen_step"] == one["gen_step"] == 30
    assert abs(one["loss"] - two["loss"]) < 1e-3 * max(1.0, abs(one["loss"]))
    np.testing.assert_allclose(two["sampled"], one["sampled"], atol=1e-3)
    assert abs(one["gen_loss"] - two["gen_loss"]) < 1e-3 * max(1.0, abs(one["gen_loss"]))
