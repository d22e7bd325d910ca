"""Console quieting (library INFO logs, brax's deprecation notice) and the paper_check preset."""

from __future__ import annotations

import logging
import os
import warnings

from experiments.configs import humanml as humanml_config
from selfconsume import outputs


def _record(path: str, level: int) -> logging.LogRecord:
  return logging.LogRecord("absl", level, path, 1, "message", None, None)


def test_quiet_console_drops_library_info_but_keeps_warnings():
  outputs.quiet_console()
  absl_logger = logging.getLogger("absl")
  orbax_file = os.path.join(os.sep, "venv", "orbax", "checkpoint", "manager.py")
  own_file = os.path.join(os.sep, "work", "selfconsume", "humanml", "model.py")
  assert not absl_logger.filter(_record(orbax_file, logging.INFO))
  assert absl_logger.filter(_record(orbax_file, logging.WARNING))
  assert absl_logger.filter(_record(own_file, logging.INFO))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("default")
    outputs.quiet_console()  # filters are re-added after catch_warnings reset them
    warnings.warn_explicit(
        "Brax System, piplines and environments are not actively being maintained. Please "
        "see MJX", UserWarning, "mjcf.py", 480, module="brax.io.mjcf")
    warnings.warn_explicit("another warning", UserWarning, "x.py", 1, module="brax.io.mjcf")
  assert [str(w.message) for w in caught] == ["another warning"]


def test_paper_check_has_the_paper_shapes_with_few_steps():
  paper = humanml_config.get_config("paper")
  check = humanml_config.get_config("paper_check")
  for section, fields in (("model", ("latent_dim", "num_layers", "num_heads", "ff_dim")),
                          ("data", ("max_frames",)),
                          ("train", ("batch_size",)),
                          ("loop", ("sample_batch_size",)),
                          ("sampling", ("method",))):
    for field in fields:
      assert check[section][field] == paper[section][field], (section, field)
  assert paper.correction.physics.max_batch == check.correction.physics.max_batch == 256
  # One generation whose corrector fills one chunk of 256, with a handful of steps.
  assert check.loop.sizes == (256,) and check.loop.lambdas == (1.0,)
  assert check.loop.generations == 1
  assert max(check.train.gen0_steps) <= 10 and check.sampling.num_steps <= 10
  assert 0 < check.train.checkpoint_every < check.train.gen0_steps[0]
