"""The workdir contract through the real command: `python -m experiments.run` refuses a
mistaken rerun with exit code 2 and one console line, and leaves the workdir byte for byte
as it was; a rerun of a finished run says so.

One finished smoke run of the motion loop (baseline only: the refusals do not depend on
the variants) is shared by the module. The rerun of the finished run and the refusal of a
second process run the program itself; the other refusals run the same command inside the
test's process (conftest's run_command), each stopping before any corpus, evaluator or model
is built.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

from experiments import gaussian as gaussian_experiment
from experiments import humanml
from experiments.configs import gaussian as gaussian_config
from experiments.configs import humanml as humanml_config
from experiments.configs import mnist as mnist_config
from selfconsume import workdir as workdir_lib
from selfconsume.humanml import data as data_lib
from tests.test_workdir import _hold_lock
from tests.test_workdir import tree_hash

_HUMANML = "experiments/configs/humanml.py:smoke"
_GAUSSIAN = "experiments/configs/gaussian.py:smoke"


def _command(run_command, config: str, workdir, *overrides: str
             ) -> subprocess.CompletedProcess:
  """The command inside this process."""
  return run_command(f"--config={config}", f"--workdir={workdir}", *overrides)


def _program(repo_root, config: str, workdir, *overrides: str) -> subprocess.CompletedProcess:
  """The command as its own process."""
  env = dict(os.environ, PYTHONPATH=str(repo_root), JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "experiments.run", f"--config={config}", f"--workdir={workdir}",
       *overrides], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)


def _assert_refused(result: subprocess.CompletedProcess, message: str) -> str:
  """Exit code 2, one 'error:' line naming the mistake, no traceback; returns the log path."""
  assert result.returncode == 2, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, result.stderr[-3000:]
  assert message in lines[0], lines[0]
  assert "Traceback" not in result.stderr
  log = lines[0].rsplit("(details: ", 1)[1].rstrip(")")
  assert "Traceback" in pathlib.Path(log).read_text()
  return log


def _smoke_config(root: pathlib.Path):
  config = humanml_config.get_config("smoke")
  config.data.corpus_dir = str(root / "corpus")
  config.eval.evaluator_cache = str(root / "evaluators")
  config.loop.variants = ("baseline",)
  config.outputs.videos = False
  config.outputs.plots = False
  return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("workdir_runs")
  workdir = root / "run"
  humanml.run(_smoke_config(root), str(workdir))
  flags = [f"--config.data.corpus_dir={root / 'corpus'}",
           f"--config.eval.evaluator_cache={root / 'evaluators'}",
           "--config.loop.variants=baseline"]
  return root, workdir, flags


def test_rerun_of_a_finished_run_says_so_and_writes_nothing(repo_root, finished_run):
  _, workdir, flags = finished_run
  before = tree_hash(workdir)
  result = _program(repo_root, _HUMANML, workdir, *flags)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"{workdir}: this run is finished" in result.stdout
  assert f"{workdir}/summary.json" in result.stdout
  assert tree_hash(workdir) == before


@pytest.mark.parametrize("overrides,message", [
    # Resuming with another seed or gamma used to mix results in one metrics.jsonl.
    (["--config.seed=7", "--config.correction.gamma=0.5"],
     "holds a run of a different config: config.correction.gamma is inf there, 0.5 here; "
     "config.seed is 0 there, 7 here"),
    # ...and a changed model used to rewrite the metadata first, breaking the sampler.
    (["--config.model.latent_dim=64"], "config.model.latent_dim is 32 there, 64 here"),
    (["--config.train.batch_size=0"], "config.train.batch_size must be an integer >= 1, got 0"),
    (["--config.loop.lambdas=abc"], "config.loop.lambdas must be a tuple of numbers, got ('abc',)"),
    (["--config.correction.gamma=nan"], "config.correction.gamma must be a number, got nan"),
    (["--config.loop.sample_batch_size=0"], "config.loop.sample_batch_size must be an integer"),
])
def test_mistaken_reruns_are_refused_and_change_nothing(run_command, finished_run, overrides,
                                                        message):
  _, workdir, flags = finished_run
  before = tree_hash(workdir)
  log = _assert_refused(_command(run_command, _HUMANML, workdir, *flags, *overrides), message)
  assert not log.startswith(str(workdir))
  assert tree_hash(workdir) == before


def test_another_dataset_is_refused(run_command, finished_run):
  root, workdir, flags = finished_run
  before = tree_hash(workdir)
  result = _command(run_command, _HUMANML, workdir, *flags, f"--config.data.root={root / 'corpus'}")
  _assert_refused(result, "holds a run of a different dataset: the run read the procedural "
                          "corpus")
  assert tree_hash(workdir) == before


def test_the_loaded_data_are_checked_against_dataset_json(finished_run, tmp_path):
  root, workdir, _ = finished_run
  config = _smoke_config(root)
  data = data_lib.load_data(config, str(workdir))
  vocab = workdir / "vocab.json"
  stamp = vocab.stat().st_mtime_ns
  before = tree_hash(workdir)
  data_lib.write_run_files(str(workdir), config, data)   # the run's data: nothing rewritten
  assert vocab.stat().st_mtime_ns == stamp
  other = _smoke_config(tmp_path)
  other.data.corpus_seed = 1
  with pytest.raises(workdir_lib.WorkdirError, match=r"holds a run of a different dataset: "
                                                     r"fingerprint is"):
    data_lib.write_run_files(str(workdir), other, data_lib.load_data(other, str(tmp_path)))
  assert tree_hash(workdir) == before


def test_a_second_process_on_the_workdir_is_refused(repo_root, finished_run):
  _, workdir, flags = finished_run
  holder = _hold_lock(repo_root, workdir)
  try:
    before = tree_hash(workdir)
    result = _program(repo_root, _HUMANML, workdir, *flags)
    _assert_refused(result, f"is in use by process {holder.pid} on ")
    assert tree_hash(workdir) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  os.remove(workdir / workdir_lib.LOCK_FILE)


def test_unusable_workdirs_and_data_files(run_command, finished_run, tmp_path):
  root, workdir, flags = finished_run
  result = _command(run_command, _HUMANML, workdir / "summary.json", *flags)
  _assert_refused(result, "summary.json' is a file, expected a directory")
  result = _command(run_command, _HUMANML, workdir / "summary.json" / "run", *flags)
  _assert_refused(result, "summary.json', which is a file, not a directory")
  frozen = tmp_path / "frozen"
  frozen.mkdir()
  frozen.chmod(0o555)
  try:
    _assert_refused(_command(run_command, _HUMANML, frozen, *flags), "frozen' is read-only")
  finally:
    frozen.chmod(0o755)
  assert os.listdir(frozen) == []
  data = tmp_path / "data"
  shutil.copytree(root / "corpus", data)
  (data / "Mean.npy").write_bytes(b"\x93NUMPY not really")
  result = _command(run_command, _HUMANML, tmp_path / "new", *flags, f"--config.data.root={data}")
  _assert_refused(result, "Mean.npy: not a readable .npy array")
  assert not (tmp_path / "new").exists()


def test_gaussian_finished_and_mistaken_reruns(run_command, tmp_path, capsys):
  config = gaussian_config.get_config("smoke")
  config.num_generations = 5
  config.last_window = 2
  gaussian_experiment.run(config, str(tmp_path))
  before = tree_hash(tmp_path)
  summary = gaussian_experiment.run(config, str(tmp_path))
  assert f"{tmp_path}: this run is finished" in capsys.readouterr().out
  assert summary["num_generations"] == 5
  assert tree_hash(tmp_path) == before
  overrides = ["--config.num_generations=5", "--config.last_window=2"]
  result = _command(run_command, _GAUSSIAN, tmp_path, *overrides,
                    "--config.gammas=(0.0,2.0)")
  _assert_refused(result, "config.gammas is (0.0, 1.0, 5.0) there, (0.0, 2.0) here")
  result = _command(run_command, _GAUSSIAN, tmp_path, *overrides,
                    "--config.synthetic_ratio=nan")
  _assert_refused(result, "config.synthetic_ratio must be a number, got nan")
  assert tree_hash(tmp_path) == before


def test_digits_mistaken_reruns(run_command, tmp_path):
  config = mnist_config.get_config("smoke")
  with workdir_lib.claim(str(tmp_path), config, workdir_lib.mnist_dataset(config)):
    pass                                      # what a first start records
  (tmp_path / "metrics.jsonl").write_text(json.dumps({"generation": 0}) + "\n")
  before = tree_hash(tmp_path)
  digits = "experiments/configs/mnist.py:smoke"
  _assert_refused(_command(run_command, digits, tmp_path, "--config.corrector.gamma=1.0"),
                  "config.corrector.gamma is inf there, 1.0 here")
  _assert_refused(_command(run_command, digits, tmp_path, "--config.corrector.gamma=-1"),
                  "config.corrector.gamma must be a number >= 0")
  _assert_refused(_command(run_command, digits, tmp_path, "--config.train.batch_size=0"),
                  "config.train.batch_size must be an integer >= 1, got 0")
  assert tree_hash(tmp_path) == before
