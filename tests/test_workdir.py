"""The workdir contract (selfconsume.workdir): identity, lock, refusals that write nothing.

Direct calls only (no training): the runs of the real command are in
tests/test_workdir_runs.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from experiments import mnist
from experiments import run as run_lib
from experiments.configs import gaussian as gaussian_config
from experiments.configs import humanml as humanml_config
from experiments.configs import mnist as mnist_config
from selfconsume import errors
from selfconsume import outputs
from selfconsume import sweep
from selfconsume import workdir as workdir_lib


def tree_hash(root: pathlib.Path) -> str:
  """Hash of every file's path and bytes under `root` (and of the directory list)."""
  h = hashlib.sha256()
  for directory, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    h.update(os.path.relpath(directory, root).encode() + b"/\0")
    for name in sorted(files):
      path = os.path.join(directory, name)
      h.update(name.encode() + b"\0")
      with open(path, "rb") as f:
        h.update(f.read())
  return h.hexdigest()


def _claim(workdir, config, dataset=None):
  with workdir_lib.claim(str(workdir), config, dataset):
    pass


def test_first_start_records_the_identity_and_a_rerun_with_it_continues(tmp_path):
  config = humanml_config.get_config("smoke")
  _claim(tmp_path / "run", config, workdir_lib.humanml_dataset(config))
  recorded = outputs.read_json(tmp_path / "run" / workdir_lib.IDENTITY_FILE)
  assert recorded["experiment"] == "humanml"
  assert recorded["config"]["correction.gamma"] == float("inf")
  assert recorded["dataset"] == {"source": "procedural", "version": recorded["dataset"]["version"]}
  assert not (tmp_path / "run" / workdir_lib.LOCK_FILE).exists()   # released
  before = tree_hash(tmp_path / "run")
  _claim(tmp_path / "run", humanml_config.get_config("smoke"),
         workdir_lib.humanml_dataset(config))
  assert tree_hash(tmp_path / "run") == before     # the identity is not rewritten


def test_result_fields_are_all_but_the_listed_ones():
  config = humanml_config.get_config("smoke")
  fields = workdir_lib.result_fields(config)
  assert "seed" in fields and "correction.gamma" in fields and "loop.lambdas" in fields
  assert "train.steps_per_call" in fields and "eval.batch_size" in fields
  assert not any(f.startswith("outputs.") for f in fields)
  for name in ("preset", "train.log_every", "data.root", "data.corpus_dir",
               "eval.evaluator_cache", "loop.generations"):
    assert name not in fields
  # A field added to the config later is result-relevant without being listed anywhere.
  with config.unlocked():
    config.train.new_option = 1
  assert "train.new_option" in workdir_lib.result_fields(config)


@pytest.mark.parametrize("overrides,message", [
    ({"seed": 7, "correction.gamma": 0.5},
     r"holds a run of a different config: config\.correction\.gamma is inf there, 0\.5 here; "
     r"config\.seed is 0 there, 7 here\. Rerun with the run's settings, or use another --workdir"),
    ({"model.latent_dim": 64}, r"config\.model\.latent_dim is 32 there, 64 here"),
    ({"loop.lambdas": (0.5,)}, r"config\.loop\.lambdas is \(1\.0,\) there, \(0\.5,\) here"),
])
def test_a_different_config_is_refused_before_anything_is_written(tmp_path, overrides, message):
  config = humanml_config.get_config("smoke")
  _claim(tmp_path, config)
  (tmp_path / "metrics.jsonl").write_text("{}\n")
  before = tree_hash(tmp_path)
  other = humanml_config.get_config("smoke")
  for dotted, value in overrides.items():
    group, _, field = dotted.rpartition(".")
    (other[group] if group else other)[field] = value
  with pytest.raises(workdir_lib.WorkdirError, match=message) as info:
    _claim(tmp_path, other)
  assert "\n" not in str(info.value)
  assert tree_hash(tmp_path) == before


def test_output_and_progress_options_may_differ(tmp_path):
  _claim(tmp_path, humanml_config.get_config("smoke"))
  other = humanml_config.get_config("smoke")
  other.outputs.videos = False
  other.outputs.video_prompts = ("someone runs",)
  other.train.log_every = 1
  other.loop.generations = 7                 # more generations continue the run
  other.data.corpus_dir = "/somewhere/else"
  other.eval.evaluator_cache = "/another/cache"
  _claim(tmp_path, other)


def test_a_different_dataset_is_refused(tmp_path):
  config = humanml_config.get_config("smoke")
  _claim(tmp_path, config, workdir_lib.humanml_dataset(config))
  data = tmp_path / "data"
  data.mkdir()
  for name in ("train.txt", "test.txt", "Mean.npy", "Std.npy"):
    (data / name).write_text(name)
  other = humanml_config.get_config("smoke")
  other.data.root = str(data)
  before = tree_hash(tmp_path)
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"a different dataset: the run read the procedural corpus \(version "
                           r"\d+\), this command reads the directory '.*data'"):
    _claim(tmp_path, other, workdir_lib.humanml_dataset(other))
  assert tree_hash(tmp_path) == before


def test_a_dataset_directory_is_known_by_its_contents_not_its_place(tmp_path):
  first, second = tmp_path / "a", tmp_path / "b"
  for root in (first, second):
    root.mkdir()
    for name in ("train.txt", "test.txt", "Mean.npy", "Std.npy"):
      (root / name).write_text(name)
  config = humanml_config.get_config("smoke")
  config.data.root = str(first)
  _claim(tmp_path / "run", config, workdir_lib.humanml_dataset(config))
  config.data.root = str(second)             # a copy elsewhere: the same data
  _claim(tmp_path / "run", config, workdir_lib.humanml_dataset(config))
  (second / "Mean.npy").write_text("other statistics")
  with pytest.raises(workdir_lib.WorkdirError, match=r"holds other data than the run's"):
    _claim(tmp_path / "run", config, workdir_lib.humanml_dataset(config))


def test_the_content_fingerprint_recorded_after_loading_is_checked(tmp_path):
  recorded = {"root": "/a", "fingerprint": "aaaa", "test_fingerprint": "cccc"}
  workdir_lib.check_dataset_record(str(tmp_path), "dataset.json", recorded,
                                   dict(recorded, root="/b"), ("fingerprint", "test_fingerprint"))
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"different dataset: fingerprint is 'aaaa' in its dataset\.json"):
    workdir_lib.check_dataset_record(str(tmp_path), "dataset.json", recorded,
                                     dict(recorded, fingerprint="bbbb"),
                                     ("fingerprint", "test_fingerprint"))


def test_a_workdir_of_an_older_version_is_compared_with_its_config_json(tmp_path):
  config = humanml_config.get_config("smoke")
  outputs.write_json(tmp_path / "config.json", config.to_dict())
  other = humanml_config.get_config("smoke")
  other.seed = 3
  with pytest.raises(workdir_lib.WorkdirError, match=r"config\.seed is 0 there, 3 here"):
    _claim(tmp_path, other)
  assert not (tmp_path / workdir_lib.IDENTITY_FILE).exists()
  _claim(tmp_path, config)
  assert (tmp_path / workdir_lib.IDENTITY_FILE).exists()


def test_digits_and_gaussian_identities(tmp_path):
  config = mnist_config.get_config("smoke")
  _claim(tmp_path / "digits", config, workdir_lib.mnist_dataset(config))
  more = mnist_config.get_config("smoke")
  more.num_seeds = 3
  more.loop.num_generations = 5               # the digits runs may be extended
  _claim(tmp_path / "digits", more, workdir_lib.mnist_dataset(more))
  other = mnist_config.get_config("smoke")
  other.corrector.gamma = 1.0
  with pytest.raises(workdir_lib.WorkdirError, match=r"config\.corrector\.gamma is inf there"):
    _claim(tmp_path / "digits", other, workdir_lib.mnist_dataset(other))
  _claim(tmp_path / "gaussian", gaussian_config.get_config("smoke"))
  with pytest.raises(workdir_lib.WorkdirError, match=r"holds a run of experiment 'gaussian'"):
    _claim(tmp_path / "gaussian", config)


def test_workdir_paths_are_checked_first(tmp_path):
  file = tmp_path / "file"
  file.write_text("x")
  config = gaussian_config.get_config("smoke")
  with pytest.raises(workdir_lib.WorkdirError, match=r"--workdir='.*file' is a file"):
    _claim(file, config)
  with pytest.raises(workdir_lib.WorkdirError, match=r"lies under '.*file', which is a file"):
    _claim(file / "run", config)
  frozen = tmp_path / "frozen"
  frozen.mkdir()
  frozen.chmod(0o555)
  try:
    with pytest.raises(workdir_lib.WorkdirError, match=r"--workdir='.*frozen' is read-only"):
      _claim(frozen, config)
  finally:
    frozen.chmod(0o755)
  assert os.listdir(frozen) == []


_HOLDER = """
import sys, time
from selfconsume import workdir
fd = workdir.acquire_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _hold_lock(repo_root, workdir):
  env = dict(os.environ, PYTHONPATH=str(repo_root))
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(workdir)], cwd=repo_root,
                            env=env, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  return holder


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(repo_root, tmp_path):
  config = gaussian_config.get_config("smoke")
  holder = _hold_lock(repo_root, tmp_path)
  try:
    before = tree_hash(tmp_path)
    with pytest.raises(workdir_lib.WorkdirError,
                       match=rf"is in use by process {holder.pid} on {socket.gethostname()} "
                             r"\(since .*; lock file .*run\.lock\); wait for it to finish"):
      _claim(tmp_path, config)
    assert tree_hash(tmp_path) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # kill -9 left its lock file behind, naming a dead process: it is taken over.
  assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())["pid"] == holder.pid
  with workdir_lib.claim(str(tmp_path), config):
    owner = json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
  assert not (tmp_path / workdir_lib.LOCK_FILE).exists()


def test_finished_runs_are_recognised(tmp_path):
  config = humanml_config.get_config("smoke")
  config.loop.variants = ("baseline",)
  assert not sweep.finished(config, str(tmp_path))
  for generation, directory in ((0, "checkpoints/n8/gen_000"), (1, "checkpoints/n8/baseline/gen_001"),
                                (2, "checkpoints/n8/baseline/gen_002")):
    outputs.write_json(tmp_path / directory / "row.json", {"generation": generation})
  assert not sweep.finished(config, str(tmp_path))      # no summary.json yet
  outputs.write_json(tmp_path / "summary.json", {})
  assert sweep.finished(config, str(tmp_path))
  config.loop.generations = 3                               # more generations asked for
  assert not sweep.finished(config, str(tmp_path))

  digits = mnist_config.get_config("smoke")
  rows = [{"variant": v, "lambda": lam, "seed": 0, "generation": g}
          for v, lam in (("baseline", 0.0), ("self_consuming", 1.5), ("self_correcting", 1.5))
          for g in range(digits.loop.num_generations + 1)]
  outputs.append_jsonl(tmp_path / "digits" / "metrics.jsonl", rows[:-1])
  outputs.write_json(tmp_path / "digits" / "summary.json", {})
  assert not mnist.finished(digits, str(tmp_path / "digits"))
  outputs.append_jsonl(tmp_path / "digits" / "metrics.jsonl", rows[-1:])
  assert mnist.finished(digits, str(tmp_path / "digits"))


def test_an_error_log_goes_into_the_workdir_only_when_the_run_had_started_there(tmp_path):
  config = gaussian_config.get_config("smoke")
  workdir = str(tmp_path / "run")
  with pytest.raises(errors.DataError) as raised:
    with workdir_lib.claim(workdir, config):
      raise errors.DataError("a dataset file went bad mid-run")
  assert workdir_lib.started_in(raised.value) == workdir
  assert run_lib.write_error_log(workdir, raised.value) == os.path.join(workdir, "error.log")
  # A later command of the same process refused on that workdir leaves it untouched.
  before = tree_hash(tmp_path / "run")
  log = run_lib.write_error_log(workdir, errors.ConfigError("config.seed must be an integer"))
  assert not log.startswith(workdir)
  assert tree_hash(tmp_path / "run") == before
  # ...as does a refusal by the claim itself.
  other = gaussian_config.get_config("smoke")
  other.seed = 7
  with pytest.raises(workdir_lib.WorkdirError) as refused:
    with workdir_lib.claim(workdir, other):
      pass
  assert workdir_lib.started_in(refused.value) is None
  assert not run_lib.write_error_log(workdir, refused.value).startswith(workdir)
