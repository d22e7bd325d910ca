"""The sweep driver under jax.distributed: two CPU processes on localhost run one loop in
one workdir; every process computes, process 0 alone writes the run's files, and the rows
are those of a single-process run."""

import glob
import json
import os
import socket
import subprocess
import sys

# A toy experiment (a Gaussian fitted by maximum likelihood) run by sweep.run_loop; argv:
# workdir [process_id coordinator_address].
_SCRIPT = r"""
import os, sys
import jax
if len(sys.argv) > 2:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=sys.argv[3], num_processes=2,
                             process_id=int(sys.argv[2]))
import jax.numpy as jnp, ml_collections, numpy as np
from selfconsume import loop, parallel, sweep

def real_buffer(n):
  return loop.make_buffer({"x": jax.random.normal(jax.random.PRNGKey(1), (n, 2)) + 3.0})

def synthetic_buffer(n, ratio):
  return loop.empty_buffer({"x": jnp.zeros((1, 2))}, loop.num_synthetic(ratio, n))

def fit(state, buffer, key, steps):
  w = buffer.valid.astype(jnp.float32)[:, None]
  mean = (w * buffer.data["x"]).sum(0) / w.sum()
  std = jnp.sqrt((w * (buffer.data["x"] - mean) ** 2).sum(0) / w.sum())
  return {"mean": mean, "std": std}, {"train_loss": float(-jnp.log(std).sum())}

def sample(state, template, key, n, ratio):
  return loop.make_buffer({"x": state["mean"] + state["std"] * jax.random.normal(
      key, (template.capacity, 2))})

def correct(key, buffer):
  x = buffer.data["x"]
  return loop.Buffer({"x": 0.5 * (x + 3.0)}, buffer.valid), {"corrected_fraction": 1.0}

def evaluate(state, key):
  return {"fid": float(((state["mean"] - 3.0) ** 2).sum() + ((state["std"] - 1) ** 2).sum())}

def save(directory, state):  # plain files: written by the process that writes files
  if parallel.is_file_writer():
    os.makedirs(directory)
    np.savez(os.path.join(directory, "state.npz"), **jax.device_get(state))

def restore(directory, template):
  with np.load(os.path.join(directory, "state.npz")) as f:
    return {name: jnp.asarray(f[name]) for name in template}

components = sweep.Components(
    real_buffer=real_buffer, synthetic_buffer=synthetic_buffer,
    init=lambda key: {"mean": jnp.zeros(2), "std": jnp.ones(2)}, fit=fit, sample=sample,
    correct=correct, evaluate=evaluate, save=save, restore=restore)
config = ml_collections.ConfigDict({
    "seed": 0,
    "loop": {"sizes": (16,), "lambdas": (1.0,), "generations": 3,
             "variants": ("baseline", "self_consuming", "self_correcting")},
    "train": {"gen0_steps": (1,), "generation_steps": (1,)},
    "outputs": {"videos": False, "plots": True, "keep_checkpoints": 2, "report": True}})
sweep.run_loop(config, sys.argv[1], components)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  for row in rows:
    row.pop("seconds")
  return rows


def test_two_processes_write_once_and_match_one(repo_root, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  one, two = tmp_path / "one", tmp_path / "two"
  single = subprocess.run([sys.executable, "-c", _SCRIPT, str(one)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  address = f"127.0.0.1:{_free_port()}"
  workers = [subprocess.Popen([sys.executable, "-c", _SCRIPT, str(two), str(i), address],
                              cwd=repo_root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
  results = [w.communicate(timeout=600) for w in workers]
  for worker, (_, err) in zip(workers, results):
    assert worker.returncode == 0, err[-3000:]

  assert _rows(two) == _rows(one)
  # One writer: one TensorBoard event file per run, one printed summary table.
  for workdir in (one, two):
    events = glob.glob(str(workdir / "tensorboard" / "*" / "events.out.tfevents.*"))
    assert len(events) == 1, events
  assert sum("last and best generation" in out for out, _ in results) == 1
  for name in ("config.json", "summary.json", "report.html", "plots/n16_lambda1.png"):
    assert (two / name).exists(), name
  # Every generation's checkpoint and row, once.
  assert len(glob.glob(str(two / "checkpoints" / "**" / "row.json"), recursive=True)) == 10
