"""The motion experiments' config rules: the loop's (`humanml`), the ones that need its
loaded data (`humanml_data`) and the evaluator experiment's (`evaluator`).

Each runs in `selfconsume.validation.validate` after the type and finiteness checks, before
any data, evaluator or model is built; every error is one line naming the field.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import ml_collections

from selfconsume import loop
from selfconsume import validation
from selfconsume.data import humanml3d
from selfconsume.data import subsets
from selfconsume.diffusion import gaussian_diffusion
from selfconsume.diffusion import sampling
from selfconsume.diffusion import schedules
from selfconsume.errors import ConfigError
from selfconsume.humanml import evaluation
from selfconsume.humanml import evaluator as evaluator_lib
from selfconsume.humanml import mdm
from selfconsume.physics import params as physics_params


def _motion_data(config: ml_collections.ConfigDict) -> None:
  """The data section shared by the motion loop and the evaluator experiment."""
  min_frames = validation.integer(config, "data.min_frames", 2)
  validation.integer(config, "data.max_frames", min_frames, what=" (>= data.min_frames)")
  validation.choice(config, "data.split", validation.SPLITS)
  validation.choice(config, "data.test_split", validation.SPLITS)
  if config.data.root:
    validation.check_input_dir(config.data.root, "config.data.root")
    root = config.data.root
    # The small files a run reads first: a corrupt one is named now, not after minutes.
    humanml3d.read_statistics(root)
    for split in {config.data.split, config.data.test_split}:
      humanml3d.read_split(root, split)
  else:
    validation.integer(config, "data.corpus_size", 1)
    validation.integer(config, "data.corpus_seed", 0)
    if config.data.corpus_dir:
      validation.check_output_dir(config.data.corpus_dir, "config.data.corpus_dir")


def humanml(config: ml_collections.ConfigDict) -> None:
  """The motion loop (experiments/configs/humanml.py)."""

  validation.integer(config, "seed", 0)
  _motion_data(config)
  if config.data.subset_ids:
    subsets.read_subset_ids(config.data.subset_ids)   # DataError naming the spec
  validation.integer(config, "text.max_len", 1)
  validation.integer(config, "text.max_captions", 1)

  for field in ("latent_dim", "num_layers", "num_heads", "ff_dim"):
    validation.integer(config, f"model.{field}", 1)
  validation.number(config, "model.dropout", 0.0, below=1.0)
  validation.number(config, "model.cond_drop_prob", 0.0, 1.0)
  validation.reraise("config.model", lambda: mdm.resolved_model_config(config.model, 3))

  validation.choice(config, "diffusion.schedule", schedules.SCHEDULES)
  diffusion_steps = validation.integer(config, "diffusion.num_steps", 2)
  validation.choice(config, "diffusion.prediction", gaussian_diffusion.PREDICTIONS)
  validation.choice(config, "sampling.method", sampling.METHODS)
  validation.integer(config, "sampling.num_steps", 1, diffusion_steps,
                     what=" (at most diffusion.num_steps)")
  validation.number(config, "sampling.guidance")
  validation.number(config, "sampling.eta", 0.0)

  validation.integer(config, "train.batch_size", 1)
  validation.number(config, "train.learning_rate", above=0.0)
  validation.number(config, "train.weight_decay", 0.0)
  validation.number(config, "train.grad_clip", 0.0)
  validation.integer(config, "train.steps_per_call", 1)
  validation.integer(config, "train.log_every", 1)

  sizes = validation.integers(config, "loop.sizes", 1)
  for field in ("train.gen0_steps", "train.generation_steps"):
    steps = validation.integers(config, field, 0)
    if len(steps) != len(sizes):
      raise ConfigError(f"config.{field} needs one step count per entry of config.loop.sizes "
                        f"{validation.show(sizes)}, got {validation.show(steps)}")
  validation.numbers(config, "loop.lambdas", 0.0)
  validation.choices(config, "loop.variants", validation.VARIANTS)
  validation.integer(config, "loop.generations", 0)
  validation.integer(config, "loop.sample_batch_size", 1)
  if validation.has(config, "loop.sampling"):   # how the loop samples its synthetic motions
    validation.choice(config, "loop.sampling.method", sampling.METHODS)
    validation.integer(config, "loop.sampling.num_steps", 1, diffusion_steps,
                       what=" (at most diffusion.num_steps)")
    validation.number(config, "loop.sampling.guidance")
    validation.number(config, "loop.sampling.eta", 0.0)
  if validation.has(config, "loop.synthetic_captions"):
    validation.choice(config, "loop.synthetic_captions", ("all", "prompt"))
  if validation.has(config, "train.checkpoint_every"):
    validation.integer(config, "train.checkpoint_every", 0,
                       what=" (0 = no checkpoints inside a fit)")

  validation.gamma(config, "correction.gamma")
  if validation.has(config, "correction.physics"):
    overrides = config.correction.physics.to_dict()
    validation.reraise("config.correction.physics",
                       lambda: physics_params.from_config(overrides), "physics")

  evaluation_fields = {k: v for k, v in config.eval.items()
                       if k not in ("evaluator", "evaluator_cache")}
  for field in ("num_samples", "batch_size", "num_repeats", "diversity_pairs"):
    if field in evaluation_fields:
      validation.integer(config, f"eval.{field}", 1)
  validation.reraise("config.eval", lambda: evaluation.resolve_config(config.eval), "evaluation")
  if "evaluator" in config.eval:
    validation.reraise("config.eval.evaluator",
                       lambda: evaluator_lib.resolve_config(config.eval.evaluator), "evaluator")
  if config.eval.get("evaluator_cache"):
    validation.check_output_dir(config.eval.evaluator_cache, "config.eval.evaluator_cache")

  outputs = config.outputs
  if "video_format" in outputs:
    validation.choice(config, "outputs.video_format", ("gif", "mp4"))
  if "video_frames" in outputs:
    validation.integer(config, "outputs.video_frames", 1)
  if "correction_videos" in outputs:
    validation.integer(config, "outputs.correction_videos", 0)
  if "keep_checkpoints" in outputs:
    validation.integer(config, "outputs.keep_checkpoints", -1,
                       what=" (-1 keeps every generation)")

  if jax.device_count() > 1 and config.train.batch_size % jax.device_count():
    raise ConfigError(f"config.train.batch_size ({config.train.batch_size}) must be divisible "
                      f"by the number of devices ({jax.device_count()})")


def humanml_data(config: ml_collections.ConfigDict, training_sets: Iterable[Any]) -> None:
  """The checks that need the loaded data, before the evaluator or generation 0 are built.

  Args:
    config: the humanml config.
    training_sets: the n real training motions (MotionDataset) of each config.loop.sizes entry.
  """
  if not any(v != "baseline" for v in config.loop.variants):
    return  # nothing is sampled
  max_captions = int(config.text.max_captions)
  for n, subset in zip(config.loop.sizes, training_sets):
    # Each synthetic motion is prompted with a distinct (motion, caption) pair of the n.
    pairs = int(sum(min(len(c), max_captions) for c in subset.captions))
    for ratio in config.loop.lambdas:
      count = loop.num_synthetic(float(ratio), int(n))
      if count > pairs:
        raise ConfigError(
            f"config.loop.lambdas: lambda = {ratio:g} with n = {n} needs {count} distinct "
            f"training captions to prompt with, but the {n} real motions have {pairs}")


def evaluator(config: ml_collections.ConfigDict) -> None:
  """The evaluator experiment (experiments/configs/evaluator.py)."""
  validation.integer(config, "seed", 0)
  _motion_data(config)
  validation.reraise("config.evaluator", lambda: evaluator_lib.resolve_config(config.evaluator),
                     "evaluator")
  validation.reraise("config.eval", lambda: evaluation.resolve_config(config.eval), "evaluation")
  if config.get("cache_dir"):
    validation.check_output_dir(config.cache_dir, "config.cache_dir")
