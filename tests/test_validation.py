"""Config validation before any work (selfconsume.validation), and the one-line messages of
mistakes found in data files and checkpoints.

Every check here is a direct call: no corpus, evaluator or model is built. The real
command's exit code and console line are tested in tests/test_workdir_runs.py.
"""

from __future__ import annotations


import jax
import numpy as np
import pytest

from experiments.configs import gaussian as gaussian_config
from experiments.configs import humanml as humanml_config
from experiments.configs import mnist as mnist_config
from selfconsume import validation
from selfconsume.data import humanml3d
from selfconsume.errors import CheckpointError
from selfconsume.errors import ConfigError
from selfconsume.errors import DataError
from selfconsume.humanml import checks
from selfconsume.humanml import training
from tests.test_train_step import VOCAB
from tests.test_train_step import tiny_config

_CONFIGS = {"humanml": humanml_config, "mnist": mnist_config, "gaussian": gaussian_config}
_RULES = {"humanml": checks.humanml, "mnist": validation.mnist, "gaussian": validation.gaussian}


def _set(config, dotted, value):
  node = config
  *groups, field = dotted.split(".")
  for name in groups:
    node = node[name]
  node[field] = value


def _validate(experiment, **overrides):
  module = _CONFIGS[experiment]
  config = module.get_config("smoke")
  for dotted, value in overrides.items():
    _set(config, dotted.replace("__", "."), value)
  validation.validate(config, module.get_config("smoke"), _RULES[experiment])


@pytest.mark.parametrize("experiment", sorted(_CONFIGS))
@pytest.mark.parametrize("preset", ["", "smoke"])
def test_the_presets_are_valid(experiment, preset):
  module = _CONFIGS[experiment]
  validation.validate(module.get_config(preset), module.get_config(preset),
                      _RULES[experiment])


@pytest.mark.parametrize("field,value,message", [
    # The cases: each names the field the user set and what was expected.
    ("train__batch_size", 0, r"config\.train\.batch_size must be an integer >= 1, got 0"),
    ("train__batch_size", -8, r"config\.train\.batch_size must be an integer >= 1, got -8"),
    ("loop__sample_batch_size", 0, r"config\.loop\.sample_batch_size must be an integer >= 1"),
    ("correction__gamma", -1.0, r"config\.correction\.gamma must be a number >= 0"),
    ("correction__gamma", float("nan"), r"config\.correction\.gamma must be a number, got nan"),
    ("loop__lambdas", ("abc",), r"config\.loop\.lambdas must be a tuple of numbers, got \('abc',\)"),
    ("loop__lambdas", (-0.5,), r"config\.loop\.lambdas must be a non-empty tuple of finite numbers >= 0"),
    ("loop__lambdas", (float("inf"),), r"config\.loop\.lambdas must be finite"),
    ("train__gen0_steps", (20, 20), r"config\.train\.gen0_steps needs one step count per entry of "
                                    r"config\.loop\.sizes \(8,\)"),
    ("train__learning_rate", float("nan"), r"config\.train\.learning_rate must be a number, got nan"),
    ("loop__variants", ("baseline", "bogus"), r"config\.loop\.variants must be a non-empty tuple"),
    ("loop__sizes", (0,), r"config\.loop\.sizes must be a non-empty tuple of integers >= 1"),
    ("seed", -1, r"config\.seed must be an integer >= 0"),
    ("sampling__num_steps", 500, r"config\.sampling\.num_steps must be an integer >= 1 and <= 100"),
    ("eval__batch_size", 64, r"config\.eval\.num_samples \(8\) must be >= config\.eval\.batch_size"),
    ("model__num_heads", 3, r"config\.model\.latent_dim \(32\) must be divisible"),
    ("correction__physics__refine_window", 0, r"config\.correction\.physics\.refine_window"),
    ("outputs__video_format", "avi", r"config\.outputs\.video_format must be one of"),
])
def test_humanml_mistakes_are_config_errors(field, value, message):
  with pytest.raises(ConfigError, match=message):
    _validate("humanml", **{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("corrector__gamma", -1.0, r"config\.corrector\.gamma must be a number >= 0"),
    ("corrector__gamma", float("nan"), r"config\.corrector\.gamma must be a number, got nan"),
    ("train__batch_size", 0, r"config\.train\.batch_size must be an integer >= 1"),
    ("loop__lambdas", ("abc",), r"config\.loop\.lambdas must be a tuple of numbers"),
    ("loop__lambdas", (0.0,), r"config\.loop\.lambdas must be a non-empty tuple of finite numbers > 0"),
    ("eval__num_samples", 10, r"config\.eval\.num_samples must be an integer >= 50"),
    ("sampling__num_steps", 0, r"config\.sampling\.num_steps must be an integer >= 1"),
    ("data__train_fraction", float("nan"), r"config\.data\.train_fraction must be a number"),
])
def test_digits_mistakes_are_config_errors(field, value, message):
  with pytest.raises(ConfigError, match=message):
    _validate("mnist", **{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("gammas", (0.0, float("nan")), r"config\.gammas must be a tuple of numbers without NaN, got \(0\.0, nan\)"),
    ("gammas", (0.0, -1.0), r"config\.gammas must be a non-empty tuple of finite numbers >= 0"),
    ("gammas", ("abc",), r"config\.gammas must be a tuple of numbers"),
    ("synthetic_ratio", float("nan"), r"config\.synthetic_ratio must be a number, got nan"),
    ("num_real", 1, r"config\.num_real must be an integer >= 2"),
    ("num_seeds", 0, r"config\.num_seeds must be an integer >= 1"),
])
def test_gaussian_mistakes_are_config_errors(field, value, message):
  with pytest.raises(ConfigError, match=message):
    _validate("gaussian", **{field: value})


def test_types_follow_the_config_file_so_new_fields_are_checked_too():
  reference = humanml_config.get_config("smoke")
  with reference.unlocked():
    reference.loop.new_count = 3
  config = humanml_config.get_config("smoke")
  with config.unlocked():
    config.loop.new_count = "three"
  with pytest.raises(ConfigError, match=r"config\.loop\.new_count must be an integer, got 'three'"):
    validation.validate(config, reference, checks.humanml)


def test_mnist_source_needs_an_existing_path(tmp_path):
  with pytest.raises(ConfigError, match=r"config\.data\.path is empty"):
    _validate("mnist", data__source="mnist")
  with pytest.raises(DataError, match=r"config\.data\.path=.*missing"):
    _validate("mnist", data__source="mnist", data__path=str(tmp_path / "nope"))


# ----------------------------------------------------------------------------- paths


def test_output_dir_that_is_a_file_or_under_one(tmp_path):
  file = tmp_path / "file"
  file.write_text("x")
  with pytest.raises(ConfigError, match=r"--workdir='.*file' is a file, expected a directory"):
    validation.check_output_dir(str(file), "--workdir")
  with pytest.raises(ConfigError, match=r"lies under '.*file', which is a file"):
    validation.check_output_dir(str(file / "run"), "--workdir")
  validation.check_output_dir(str(tmp_path / "new" / "run"), "--workdir")   # can be made
  assert not (tmp_path / "new").exists()


def test_read_only_output_dir(tmp_path):
  # Refused even for root, who could write there: a directory without write bits was made
  # read-only on purpose. (The sampler's --out goes through the same check.)
  frozen = tmp_path / "frozen"
  frozen.mkdir()
  frozen.chmod(0o555)
  try:
    with pytest.raises(ConfigError, match=r"--out='.*frozen' is read-only"):
      validation.check_output_dir(str(frozen), "--out")
    with pytest.raises(ConfigError, match=r"cannot be created: '.*frozen' is read-only"):
      validation.check_output_dir(str(frozen / "samples"), "--out")
  finally:
    frozen.chmod(0o755)


def test_evaluator_cache_and_corpus_dir_paths_are_checked(tmp_path):
  file = tmp_path / "file"
  file.write_text("x")
  with pytest.raises(ConfigError, match=r"config\.eval\.evaluator_cache='.*file' is a file"):
    _validate("humanml", eval__evaluator_cache=str(file))
  with pytest.raises(ConfigError, match=r"config\.data\.corpus_dir=.*lies under"):
    _validate("humanml", data__corpus_dir=str(file / "corpus"))


# ----------------------------------------------------------------------------- data files


def _data_root(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  np.save(root / "Mean.npy", np.zeros(263, np.float32))
  np.save(root / "Std.npy", np.ones(263, np.float32))
  for split in ("train", "test"):
    (root / f"{split}.txt").write_text("000001\n")
  return root


def test_data_root_must_be_a_directory(tmp_path):
  with pytest.raises(DataError, match=r"config\.data\.root='.*nope' is missing"):
    _validate("humanml", data__root=str(tmp_path / "nope"))


def test_corrupt_mean_npy_is_named_before_any_work(tmp_path):
  root = _data_root(tmp_path)
  _validate("humanml", data__root=str(root))    # the small files are fine
  (root / "Mean.npy").write_bytes(b"\x93NUMPY garbage")
  with pytest.raises(DataError, match=r"Mean\.npy: not a readable \.npy array"):
    _validate("humanml", data__root=str(root))


def test_non_utf8_text_files_are_data_errors(tmp_path):
  root = _data_root(tmp_path)
  (root / "train.txt").write_bytes(b"000001\n\xff\xfe\n")
  with pytest.raises(DataError, match=r"train\.txt: not UTF-8 text"):
    _validate("humanml", data__root=str(root))
  caption = tmp_path / "000001.txt"
  caption.write_bytes("a person walks#a/DET#0.0#0.0\n".encode() + b"caf\xe9 walk#x#0#0\n")
  with pytest.raises(DataError, match=r"000001\.txt: not UTF-8 text"):
    humanml3d.read_captions(str(caption))


# ----------------------------------------------------------------------------- checkpoints


def test_truncated_checkpoint_message_is_one_line(tmp_path, truncate_checkpoint):
  config = tiny_config()
  state = training.create_train_state(config, jax.random.PRNGKey(0), VOCAB)
  training.Checkpointer(tmp_path, config, VOCAB).save(state)
  assert truncate_checkpoint(tmp_path, min_bytes=1000)
  with pytest.raises(CheckpointError) as info:
    training.Checkpointer(tmp_path, config, VOCAB).restore(state)
  message = str(info.value)
  assert "\n" not in message and len(message) < 400, message
  assert "truncated or corrupt" in message and str(tmp_path) in message
