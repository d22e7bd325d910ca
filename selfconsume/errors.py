"""Errors that carry a message meant for the person running the experiment.

`experiments/run.py` prints these without a traceback: they describe bad input (a config
value, a dataset file, a checkpoint), not a bug in the code.
"""


class ConfigError(ValueError):
  """A config value is missing, unknown or out of range."""


class DataError(ValueError):
  """A dataset file or directory is malformed; the message names the file."""


class CheckpointError(ValueError):
  """A checkpoint is missing, corrupt, or was written with an incompatible config."""


class NonFiniteError(FloatingPointError):
  """A loss, a sample or a simulation produced NaN or inf."""
