"""The motion experiment's pieces of the self-consuming loop: data, MDM fitting and
sampling, physics correction, evaluation, checkpoints and videos.

`build_components(config, workdir)` wires the data (selfconsume.data), MDM
(selfconsume.models.mdm, selfconsume.train), the physics corrector (selfconsume.physics) and
the evaluator (selfconsume.evaluation) into the `sweep.Components` that `selfconsume.sweep`
drives through `selfconsume.loop.run_generation`.

An example in a loop Buffer is a dict
  'motion'       (frames, 263) float32, normalised, zero on padded frames
  'lengths'      () int32, real frames
  'text_ids'     (captions, max_len) int32, every caption of the motion (0-padded)
  'text_mask'    (captions, max_len) bool
  'num_captions' () int32
A training batch picks one of each example's captions at random (HumanML3D trains on a random
caption of a motion); a synthetic example carries the one caption it was generated from.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from typing import Any, Callable, Mapping, Sequence

from absl import logging as absl_logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from selfconsume import evaluation
from selfconsume import evaluator_record
from selfconsume import loop
from selfconsume import outputs
from selfconsume import parallel
from selfconsume import sweep
from selfconsume import train as train_lib
from selfconsume import validation
from selfconsume import workdir as workdir_lib
from selfconsume.data import humanml3d
from selfconsume.data import procedural
from selfconsume.data import subsets
from selfconsume.data import text as text_lib
from selfconsume.errors import CheckpointError
from selfconsume.errors import ConfigError
from selfconsume.errors import DataError
from selfconsume.errors import NonFiniteError
from selfconsume.models import mdm
from selfconsume.motion import features
from selfconsume.motion.frames import frame_mask
from selfconsume.motion import render
from selfconsume.motion import viewer
from selfconsume.physics import corrector
from selfconsume.physics import metrics as physics_metrics
from selfconsume.physics import params as params_lib

Example = dict[str, jax.Array]

# What a synthetic motion is trained with: 'all' captions of the real motion whose caption
# prompted it (the paper), or only that 'prompt'.
SYNTHETIC_CAPTIONS = ("all", "prompt")
# Per-motion fields of the corrector's info reported (mean and interval) in every
# self_correcting row besides tracking_error_m and fell.
CORRECTION_INFO = ("resets", "imitated_fraction", "realisable")


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class MotionData:
  """The datasets of a run.

  Attributes:
    train: the full training split (vocabulary, evaluator training, the n-subsets).
    test: the evaluation split.
    vocab: word vocabulary of the training captions (the MDM text encoder's).
    root: dataset directory.
  """
  train: Any
  test: Any
  vocab: text_lib.Vocabulary
  root: str


def dataset_root(config: ml_collections.ConfigDict, workdir: str) -> str:
  """config.data.root, or the procedural corpus (built on first use) when it is empty."""
  if config.data.root:
    if not os.path.isdir(config.data.root):
      raise DataError(f"config.data.root={config.data.root!r} is not a directory")
    return config.data.root
  corpus_dir = config.data.corpus_dir or os.path.join(workdir, "corpus")
  return procedural.ensure_corpus(corpus_dir, int(config.data.corpus_size),
                                  int(config.data.corpus_seed))


def load_data(config: ml_collections.ConfigDict, workdir: str) -> MotionData:
  root = dataset_root(config, workdir)
  kwargs = dict(min_frames=int(config.data.min_frames), max_frames=int(config.data.max_frames))
  train = humanml3d.load(root, config.data.split, **kwargs)
  test = humanml3d.load(root, config.data.test_split, **kwargs)
  vocab = text_lib.Vocabulary.build(c for captions in train.captions for c in captions)
  return MotionData(train=train, test=test, vocab=vocab, root=root)


def load_subset(config: ml_collections.ConfigDict, data: MotionData, n: int) -> Any:
  """The n real training motions: the ids of config.data.subset_ids, or n drawn by seed."""
  subset_ids = None
  if config.data.subset_ids:
    # 'paper:64' etc. or a file. The paper's 64/128/256 lists hold one id more than their
    # name; the first n are used (loop.sizes = (65,) trains on the whole paper:64 list).
    subset_ids = subsets.read_subset_ids(config.data.subset_ids)
    if len(subset_ids) < n:
      raise DataError(f"{config.data.subset_ids}: {len(subset_ids)} ids, but n = {n} "
                      "motions were asked for (config.loop.sizes)")
    subset_ids = subset_ids[:n]
  subset = humanml3d.load(data.root, config.data.split, min_frames=int(config.data.min_frames),
                          max_frames=int(config.data.max_frames), subset_ids=subset_ids,
                          num_motions=None if subset_ids else n, seed=int(config.seed))
  if subset_ids is None and len(subset.lengths) != n:
    raise DataError(f"{data.root} [{config.data.split}]: asked for n = {n} motions, found "
                    f"{len(subset.lengths)} (between {config.data.min_frames} and "
                    f"{config.data.max_frames} frames)")
  return subset


def caption_slots(config: ml_collections.ConfigDict, data: MotionData) -> int:
  """Captions kept per example: the most any training motion has, at most
  config.text.max_captions."""
  most = max(1, max(len(c) for c in data.train.captions))
  return min(most, int(config.text.get("max_captions", 8)))


def real_examples(config: ml_collections.ConfigDict, data: MotionData, n: int) -> loop.Buffer:
  """The loop's buffer of the n real training motions (`load_subset`), every caption."""
  subset = load_subset(config, data, n)
  return loop.make_buffer(encode_examples(
      subset.motions, subset.lengths, subset.captions, data.vocab, int(config.text.max_len),
      caption_slots(config, data)))


def encode_examples(motions: np.ndarray, lengths: np.ndarray,
                    captions: Sequence[Sequence[str]], vocab: text_lib.Vocabulary,
                    max_len: int, max_captions: int) -> Example:
  """Buffer examples from motions (N, frames, 263), lengths (N,) and each one's captions."""
  num = len(lengths)
  ids = np.zeros((num, max_captions, max_len), np.int32)
  counts = np.zeros((num,), np.int32)
  for row, options in enumerate(captions):
    if not options:
      raise DataError(f"motion {row} has no caption")
    options = list(options)[:max_captions]
    ids[row, :len(options)] = text_lib.encode(options, vocab, max_len)[0]
    counts[row] = len(options)
  return {"motion": jnp.asarray(motions, jnp.float32),
          "lengths": jnp.asarray(lengths, jnp.int32),
          "text_ids": jnp.asarray(ids), "text_mask": jnp.asarray(ids > 0),
          "num_captions": jnp.asarray(counts)}


def training_batch(key: jax.Array, buffer: loop.Buffer, batch_size: int) -> dict[str, jax.Array]:
  """A training batch for selfconsume.train: uniform over the buffer, a random caption each."""
  draw_key, caption_key = jax.random.split(key)
  ex = loop.draw_batch(draw_key, buffer, batch_size)
  pick = jnp.floor(jax.random.uniform(caption_key, (batch_size,)) *
                   ex["num_captions"]).astype(jnp.int32)
  rows = jnp.arange(batch_size)
  return {"motion": ex["motion"], "lengths": ex["lengths"],
          "text_ids": ex["text_ids"][rows, pick], "text_mask": ex["text_mask"][rows, pick]}


def fresh_optimizer(state: Any) -> Any:
  """The paper fine-tunes each generation with a new AdamW: moments and bias correction
  start afresh, only the weights carry over."""
  return state.replace(opt_state=state.tx.init(state.params))


def draw_prompts(key: jax.Array, real: loop.Buffer, count: int) -> tuple[jax.Array, jax.Array]:
  """`count` (motion, caption) pairs of the real set, without replacement.

  Returns (rows (count,), caption index (count,)); the motion's real length goes with it.
  """
  num, captions = real.data["text_ids"].shape[:2]
  slot = jnp.arange(captions)[None, :]
  valid = (slot < real.data["num_captions"][:, None]) & real.valid[:, None]
  # Random scores; invalid pairs sort last, so the first `count` are a uniform draw
  # without replacement from the valid ones.
  scores = jnp.where(valid, jax.random.uniform(key, valid.shape), 2.0).reshape(-1)
  order = jnp.argsort(scores)[:count]
  return order // captions, order % captions


# ----------------------------------------------------------------------------- checkpoints


def save_train_state(directory: str, state: Any, config: ml_collections.ConfigDict,
                     vocab_size: int, normalization: Mapping[str, np.ndarray] | None = None
                     ) -> None:
  """Writes a TrainState (with config and normalisation) as selfconsume.checkpoint does.

  Orbax finalises the step directory by an atomic rename: it is complete or absent.
  """
  checkpointer = train_lib.Checkpointer(directory, config, vocab_size,
                                         normalization=normalization)
  try:
    checkpointer.save(state)
  finally:
    checkpointer.close()


def restore_train_state(directory: str, template: Any, config: ml_collections.ConfigDict,
                        vocab_size: int) -> Any:
  """The TrainState saved in `directory`, restored into the structure of `template`.

  Raises CheckpointError when there is none, or it was written for a different model.
  """
  if not os.path.isdir(directory):
    raise CheckpointError(f"{directory}: no checkpoint there")
  checkpointer = train_lib.Checkpointer(directory, config, vocab_size)
  try:
    return checkpointer.restore(template)
  finally:
    checkpointer.close()


def write_run_files(workdir: str, config: ml_collections.ConfigDict, data: MotionData) -> None:
  """What experiments/sample.py needs besides a checkpoint: vocabulary and normalisation.

  Called once the data are loaded, before the evaluator or generation 0 are built: first
  the checks that need the data (lambda * n prompts, selfconsume.validation.humanml_data),
  then, on a rerun, that the data are the run's (dataset.json's content fingerprints, else
  a WorkdirError and nothing written). The files are the run's metadata: each is written
  once, atomically, and dataset.json last, so its presence says they all are.
  """
  validation.humanml_data(config, [load_subset(config, data, int(n)) for n in config.loop.sizes])
  record = {"root": data.root, "fingerprint": data.train.fingerprint(),
            "test_fingerprint": data.test.fingerprint(),
            "max_frames": int(config.data.max_frames), "min_frames": int(config.data.min_frames)}
  dataset_path = os.path.join(workdir, "dataset.json")
  if os.path.exists(dataset_path):
    workdir_lib.check_dataset_record(workdir, "dataset.json", outputs.read_json(dataset_path),
                                     record, ("fingerprint", "test_fingerprint"))
    return
  data.vocab.save(os.path.join(workdir, "vocab.json"))   # atomic (outputs.write_json)
  path = os.path.join(workdir, "normalization.npz")
  tmp = path + ".tmp.npz"
  np.savez(tmp, mean=np.asarray(data.train.mean, np.float32),
           std=np.asarray(data.train.std, np.float32))
  os.replace(tmp, path)
  outputs.write_json(dataset_path, record)


# ----------------------------------------------------------------------------- the pieces


class MotionModel:
  """MDM with its sampler, in the shapes of one run (compiled once per shape)."""

  def __init__(self, config: ml_collections.ConfigDict, vocab: text_lib.Vocabulary,
               mean: np.ndarray, std: np.ndarray):
    self.config = config
    self.vocab = vocab
    self.max_frames = int(config.data.max_frames)
    self.max_len = int(config.text.max_len)
    self.batch_size = int(config.loop.sample_batch_size)
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self._train = train_lib
    self._template = train_lib.create_train_state(config, jax.random.PRNGKey(0), vocab.size)
    # Two samplers: the loop's (config.loop.sampling; the paper samples its synthetic data
    # ancestrally, without guidance) and evaluation's / the sampler's (config.sampling).
    self.generate = mdm.make_generate_fn(self._template.model, config, self.max_frames)
    self.generate_loop = mdm.make_generate_fn(self._template.model, config, self.max_frames,
                                              config.loop.sampling)
    self._multi_steps: dict[tuple[int, int], Callable] = {}
    # Data parallel over every local device (and host): each batch is split over a 'data'
    # mesh axis, parameters and the training buffer are replicated. One device: no mesh.
    self.mesh = parallel.make_mesh() if jax.device_count() > 1 else None
    if self.mesh is not None:
      parallel.check_batch_size(int(config.train.batch_size), self.mesh)
      parallel.check_batch_size(self.batch_size, self.mesh, "config.loop.sample_batch_size")

  def init(self, key: jax.Array) -> Any:
    return self._train.create_train_state(self.config, key, self.vocab.size)

  def fit(self, state: Any, buffer: loop.Buffer, key: jax.Array, steps: int, *,
          capacity: int = 0, desc: str = "fit", checkpoint_dir: str | None = None,
          log: Callable[[int, float], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """`steps` optimizer steps on batches drawn from `buffer`; returns the mean loss.

    A buffer smaller than `capacity` is padded with invalid slots first, so that real-only
    and real + synthetic training sets share one compiled step. The steps run in jitted
    calls of config.train.steps_per_call; call c draws from fold_in(key, c), a function of
    where it sits in the fit (not a key carried from call to call), so a fit resumed at a
    call boundary draws exactly what an uninterrupted fit draws.

    With `checkpoint_dir`, the state and the loss sum so far are saved there every
    config.train.checkpoint_every steps (rounded to whole calls), and a fit that finds its
    own checkpoint there (same first step and call size, a step inside this fit) resumes
    from it: state and mean loss equal the uninterrupted fit's bit for bit. The caller
    deletes the directory once it has saved the result. `log(steps done, mean loss of the
    last interval)` is called every config.train.log_every steps (rounded to whole calls).
    """
    if steps <= 0:
      return state, {"train_loss": None}
    if buffer.capacity < capacity:
      like = jax.tree.map(lambda x: x[:1], buffer.data)
      buffer = loop.concat(buffer, loop.empty_buffer(like, capacity - buffer.capacity))
    per_call = max(1, min(int(self.config.train.steps_per_call), steps))
    cache_key = (buffer.capacity, per_call)
    if cache_key not in self._multi_steps:
      batch_size = int(self.config.train.batch_size)
      sharding = parallel.batch_sharding(self.mesh) if self.mesh is not None else None
      self._multi_steps[cache_key] = self._train.make_multi_step(
          lambda k, b: training_batch(k, b, batch_size), per_call, sharding)
    multi_step = self._multi_steps[cache_key]
    calls = -(-steps // per_call)
    # multi_step donates its input state; the caller's (e.g. the shared generation 0) stays.
    state = jax.tree.map(jnp.copy, state)
    progress = _FitProgress(self, checkpoint_dir, int(state.step), per_call, calls)
    state = progress.resume(state)
    if self.mesh is not None:
      state, buffer = parallel.replicate((state, buffer), self.mesh)
    every = lambda name: max(1, round(int(self.config.train.get(name, 0)) / per_call))  # noqa: E731
    log_calls = every("log_every")
    save_calls = (every("checkpoint_every")
                  if checkpoint_dir and self.config.train.get("checkpoint_every", 0) else 0)
    bar = tqdm.tqdm(total=calls * per_call, initial=progress.start_call * per_call, desc=desc,
                    leave=False, unit="step")
    window: list[np.ndarray] = []
    try:
      for call in range(progress.start_call, calls):
        first = int(state.step)
        state, metrics = multi_step(state, buffer, jax.random.fold_in(key, call))
        metrics = jax.device_get(metrics)
        self._train.check_finite(metrics, first, state)
        losses = np.asarray(metrics["loss"], np.float64).reshape(-1)
        progress.add(losses)
        window.append(losses)
        bar.update(per_call)
        done = call + 1
        if done % log_calls == 0 or done == calls:
          loss = float(np.mean(np.concatenate(window)))
          window = []
          bar.set_postfix(loss=f"{loss:.4f}")
          if log is not None:
            log(done * per_call, loss)
        if save_calls and done % save_calls == 0 and done < calls:
          progress.save(state)
          absl_logging.info("%s: step %d of %d, loss %.4f; checkpoint in %s", desc,
                            done * per_call, calls * per_call, progress.mean(), checkpoint_dir)
    finally:
      bar.close()
      progress.close()
    return state, {"train_loss": progress.mean()}

  def sample(self, state: Any, text_ids: jax.Array, text_mask: jax.Array, lengths: jax.Array,
             key: jax.Array) -> jax.Array:
    """Normalised motions (B, frames, 263) for any B, in fixed-size batches, with the
    evaluation's settings (config.sampling): the sampler between generations."""
    num = lengths.shape[0]
    out = []
    for b, start in enumerate(range(0, num, self.batch_size)):
      rows = jnp.arange(start, start + self.batch_size) % num
      motions = self.generate(state.sampling_params(),
                              {"ids": text_ids[rows], "mask": text_mask[rows]},
                              lengths[rows], jax.random.fold_in(key, b))
      out.append(motions[:min(self.batch_size, num - start)])
    motions = jnp.concatenate(out)
    if not bool(jnp.all(jnp.isfinite(motions))):
      raise NonFiniteError("MDM sampling produced NaN/inf motions")
    return motions

  def sample_in_program(self, params: Any, text_ids: jax.Array, text_mask: jax.Array,
                        lengths: jax.Array, key: jax.Array) -> jax.Array:
    """The loop's sampler (config.loop.sampling) as a pure function: (B, frames, 263).

    B = lengths.shape[0] motions in batches of config.loop.sample_batch_size, one `lax.map`
    over the batches; batch b draws from fold_in(key, b) and the last batch wraps around to
    the first prompts, so it draws what a host loop over the same batches draws.
    """
    num = lengths.shape[0]
    batches = -(-num // self.batch_size)
    rows = jnp.arange(batches * self.batch_size).reshape(batches, self.batch_size) % num

    def one_batch(b):
      inputs = ({"ids": text_ids[rows[b]], "mask": text_mask[rows[b]]}, lengths[rows[b]])
      if self.mesh is not None:  # the motions of a batch split over the devices
        inputs = jax.lax.with_sharding_constraint(inputs, parallel.batch_sharding(self.mesh))
      return self.generate_loop(params, *inputs, jax.random.fold_in(key, b))

    motions = jax.lax.map(one_batch, jnp.arange(batches))
    return motions.reshape((-1,) + motions.shape[2:])[:num]

  def fit_in_program(self, state: Any, buffer: loop.Buffer, key: jax.Array, steps: int,
                     capacity: int) -> tuple[Any, dict[str, jax.Array]]:
    """`fit` as a pure function (no checkpoints, no progress bar): the loop's fine-tuning
    inside a fused generation. Same padding, calls and keys as `fit`, so the same steps.

    Returns (state, metrics): train_loss (mean), fit_losses (calls, steps_per_call) and
    fit_nonfinite (steps whose loss or gradient was not finite; they left the state as is).
    """
    if buffer.capacity < capacity:
      like = jax.tree.map(lambda x: x[:1], buffer.data)
      buffer = loop.concat(buffer, loop.empty_buffer(like, capacity - buffer.capacity))
    if self.config.train.fresh_optimizer:
      state = fresh_optimizer(state)
    batch_size = int(self.config.train.batch_size)
    state, metrics = self._train.fit_in_program(
        state, buffer, key, draw_batch=lambda k, b: training_batch(k, b, batch_size),
        num_steps=steps, steps_per_call=int(self.config.train.steps_per_call),
        batch_sharding=parallel.batch_sharding(self.mesh) if self.mesh is not None else None)
    return state, {"train_loss": jnp.mean(metrics["loss"]), "fit_losses": metrics["loss"],
                   "fit_nonfinite": jnp.sum(metrics["nonfinite"] > 0)}

  def sample_captions(self, state: Any, captions: Sequence[str], lengths: np.ndarray,
                      key: jax.Array) -> jax.Array:
    ids, mask = text_lib.encode(list(captions), self.vocab, self.max_len)
    return self.sample(state, jnp.asarray(ids), jnp.asarray(mask),
                       jnp.asarray(lengths, jnp.int32), key)

  def denormalize(self, motions: jax.Array, lengths: jax.Array) -> jax.Array:
    raw = motions * self.std + self.mean
    return raw * frame_mask(lengths, motions.shape[1])[..., None].astype(jnp.float32)

  def normalize(self, raw: jax.Array, lengths: jax.Array) -> jax.Array:
    motions = (raw - self.mean) / self.std
    return motions * frame_mask(lengths, raw.shape[1])[..., None].astype(jnp.float32)

  def joints(self, motions: jax.Array, lengths: jax.Array) -> jax.Array:
    """Joint positions (B, frames, 22, 3) of normalised motions."""
    return features.features_to_joints(self.denormalize(motions, lengths), lengths)


class _FitProgress:
  """The resumable part of a long fit: its checkpoints and the running loss sum.

  `checkpoint_dir`/state holds orbax checkpoints of the train state (the newest only);
  `checkpoint_dir`/fit.json the fit's identity (first step, steps per call, calls) and the
  loss sum and count at the saved step. The record is written before the checkpoint, so the
  newest checkpoint always has its losses.
  """

  def __init__(self, model: "MotionModel", checkpoint_dir: str | None, first_step: int,
               per_call: int, calls: int):
    self.directory = checkpoint_dir
    self.identity = {"first_step": int(first_step), "steps_per_call": int(per_call),
                     "calls": int(calls)}
    self.start_call, self.loss_sum, self.loss_count = 0, 0.0, 0
    self._model = model
    self._checkpointer = self._open() if checkpoint_dir else None

  def _open(self):
    return train_lib.Checkpointer(os.path.join(self.directory, "state"), self._model.config,
                                   self._model.vocab.size, max_to_keep=1)

  @property
  def _record_path(self) -> str:
    return os.path.join(self.directory, "fit.json")

  def resume(self, state: Any) -> Any:
    """`state`, or the newest checkpoint of this same fit restored into it."""
    if self._checkpointer is None:
      return state
    saved = self._checkpointer.latest_step()
    if saved is None:
      return state
    record = outputs.read_json(self._record_path) if os.path.exists(self._record_path) else {}
    first, per_call = self.identity["first_step"], self.identity["steps_per_call"]
    losses = record.get("losses", {}).get(str(saved))
    inside = first < saved < first + self.identity["calls"] * per_call
    if (record.get("identity") != self.identity or losses is None
        or (saved - first) % per_call or not inside):
      absl_logging.warning("%s holds a checkpoint of another fit (step %s); starting over",
                           self.directory, saved)
      self._checkpointer.close()
      shutil.rmtree(self.directory)
      self._checkpointer = self._open()
      return state
    self.start_call = (saved - first) // per_call
    self.loss_sum, self.loss_count = float(losses[0]), int(losses[1])
    absl_logging.info("%s: resuming the fit at step %d", self.directory, saved)
    return self._checkpointer.restore(state, saved)

  def add(self, losses: np.ndarray) -> None:
    self.loss_sum += float(np.sum(losses))
    self.loss_count += int(losses.size)

  def mean(self) -> float:
    return self.loss_sum / max(self.loss_count, 1)

  def save(self, state: Any) -> None:
    step = int(jax.device_get(state.step))
    outputs.write_json(self._record_path, {
        "identity": self.identity, "losses": {str(step): [self.loss_sum, self.loss_count]}})
    self._checkpointer.save(state)

  def close(self) -> None:
    if self._checkpointer is not None:
      self._checkpointer.close()


def mean_and_interval(per_motion: Mapping[str, Any], xp: Any = jnp) -> dict[str, Any]:
  """{name: mean, name_ci95: 1.96 sd / sqrt(B)} of per-motion values, each (B,).

  `xp=jnp` (float32, jit-able: inside a fused generation) or `np` (float64, on the host).
  """
  dtype = np.float64 if xp is np else jnp.float32
  out = {}
  for name, values in per_motion.items():
    values = xp.asarray(values, dtype).reshape(-1)
    out[name] = xp.mean(values)
    out[f"{name}_ci95"] = 1.96 * xp.std(values) / np.sqrt(max(values.size, 1))
  return out


def physics_summary(joints: jax.Array, lengths: jax.Array) -> dict[str, float]:
  """Mean and 95% interval over motions of float_mm, penetrate_mm, skate and jerk.

  Args:
    joints: (B, frames, 22, 3) joint positions in metres.
    lengths: (B,) valid frames.
  """
  summary = mean_and_interval(jax.device_get(physics_metrics.physics_metrics(joints, lengths)),
                              np)
  return {name: float(value) for name, value in summary.items()}


def corrector_params(config: ml_collections.ConfigDict) -> Any:
  """The physics corrector's settings: CorrectorParams with config.correction.physics."""
  return params_lib.from_config(config.correction.physics.to_dict())


def correct_motions(model: MotionModel, physics: Any, motions: jax.Array, lengths: jax.Array
                    ) -> tuple[jax.Array, jax.Array, Mapping[str, Any]]:
  """Physics-corrects normalised motions (B, frames, 263).

  Returns:
    (corrected normalised motions, usable (B,) bool, the corrector's info dict). Samples
    whose simulation was not finite are returned uncorrected and marked not usable.
  """
  raw = model.denormalize(motions, lengths)
  fixed_raw, info = corrector.correct(raw, lengths, physics)
  fixed = model.normalize(jnp.asarray(fixed_raw, jnp.float32), lengths)
  usable = ~jnp.asarray(info.get("nonfinite", jnp.zeros(lengths.shape, bool)), bool)
  usable = usable & jnp.all(jnp.isfinite(fixed), axis=(1, 2))
  fixed = jnp.where(usable[:, None, None], jnp.nan_to_num(fixed), motions)
  return fixed, usable, info


def loop_stages(config: ml_collections.ConfigDict, model: MotionModel, n: int
                ) -> tuple[loop.SampleFn, loop.CorrectFn, loop.FitFn]:
  """The loop's sample, correct and fit for n real motions: pure, jit-able functions that
  `loop.make_generation` compiles into one generation.

  sample: one prompt per synthetic slot, (motion, caption) pairs of the real buffer drawn
    without replacement; the motion keeps the prompting motion's length and, with
    config.loop.synthetic_captions = 'all' (the paper), all of its captions.
  correct: every motion physics-corrected (selfconsume.physics.corrector), then pi_gamma
    mixes corrected and sampled motions (gamma = config.correction.gamma).
  fit: config.train.generation_steps fine-tuning steps, padded to the training set of the
    largest lambda, with a fresh AdamW when config.train.fresh_optimizer.
  """
  gamma = float(config.correction.gamma)
  synthetic_captions = str(config.loop.synthetic_captions)
  if synthetic_captions not in SYNTHETIC_CAPTIONS:
    raise ConfigError(f"config.loop.synthetic_captions must be one of {SYNTHETIC_CAPTIONS}, "
                      f"got {synthetic_captions!r}")
  sizes = [int(size) for size in config.loop.sizes]
  steps = int(config.train.generation_steps[sizes.index(n)])

  def sample_fn(state, real: loop.Buffer, previous: loop.Buffer, key) -> loop.Buffer:
    count = previous.capacity
    prompt_key, sample_key = jax.random.split(key)
    rows, slots = draw_prompts(prompt_key, real, count)
    ids = real.data["text_ids"][rows, slots]
    lengths = real.data["lengths"][rows]
    motions = model.sample_in_program(state.sampling_params(), ids, ids > 0, lengths,
                                      sample_key)
    if synthetic_captions == "all":
      # The paper trains each synthetic motion with every caption of the real motion whose
      # caption prompted it.
      text_ids = real.data["text_ids"][rows]
      num_captions = real.data["num_captions"][rows]
    else:
      text_ids = jnp.zeros((count,) + real.data["text_ids"].shape[1:], jnp.int32)
      text_ids = text_ids.at[:, 0].set(ids)
      num_captions = jnp.ones((count,), jnp.int32)
    return loop.make_buffer({"motion": motions, "lengths": lengths, "text_ids": text_ids,
                             "text_mask": text_ids > 0, "num_captions": num_captions})

  def correct_fn(key, buffer: loop.Buffer):
    lengths = buffer.data["lengths"]
    # The first half of the split once keyed the corrector's own mixing; the mixing key
    # stays the second half so runs keep drawing what they drew.
    _, mix_key = jax.random.split(key)
    fixed, usable, info = correct_motions(model, corrector_params(config),
                                          buffer.data["motion"], lengths)
    mixed, replaced = loop.replace_with_probability(mix_key, buffer.data["motion"], fixed,
                                                    gamma)
    out = loop.Buffer(data=dict(buffer.data, motion=mixed), valid=buffer.valid)
    per_motion = {"tracking_error_m": info["tracking_error_m"], "fall_rate": info["fell"],
                  "corrected_fraction": replaced & usable}
    # The fail-safe's account: resets per motion, the share of frames imitated without one.
    for name in CORRECTION_INFO:
      if name in info:
        per_motion[name] = info[name]
    if "nonfinite" in info:
      per_motion["nonfinite_rate"] = info["nonfinite"]
    return out, mean_and_interval(per_motion)

  def fit_fn(state, training_set: loop.Buffer, key):
    return model.fit_in_program(state, training_set, key, steps, fit_capacity(config, n))

  return sample_fn, correct_fn, fit_fn


def fit_capacity(config: ml_collections.ConfigDict, n: int) -> int:
  """n real + floor(max lambda * n) synthetic slots: every training set of size n fits, and
  padding to it gives generation 0 and every variant's fit one batch shape."""
  return n + max(loop.num_synthetic(float(r), n) for r in config.loop.lambdas)


def decode_caption(vocab: text_lib.Vocabulary, ids: np.ndarray) -> str:
  return " ".join(vocab.words[i] for i in np.asarray(ids) if i > 0)


def build_components(config: ml_collections.ConfigDict, workdir: str):
  """The motion experiment's `sweep.Components`: MDM, the physics corrector, the evaluator."""

  data = load_data(config, workdir)
  write_run_files(workdir, config, data)
  model = MotionModel(config, data.vocab, data.train.mean, data.train.std)
  normalization = {"mean": np.asarray(data.train.mean, np.float32),
                   "std": np.asarray(data.train.std, np.float32)}
  max_captions = caption_slots(config, data)
  # The run's evaluator: a copy kept in the workdir and recorded in evaluator.json
  # (fingerprint, training data, real-vs-real FID), so every number traces back to it.
  evaluator = evaluator_record.load_or_train(
      workdir, data.train, config.eval.evaluator, config.eval.evaluator_cache or None,
      log_dir=os.path.join(workdir, "tensorboard", "evaluator"))
  eval_config = evaluation.resolve_config(config.eval)
  eval_config.generate_batch_size = model.batch_size
  evaluator_record.record(workdir, evaluator, data.test, eval_config)
  sizes = [int(size) for size in config.loop.sizes]
  stages = functools.cache(lambda n: loop_stages(config, model, n))
  physics = functools.cache(lambda: corrector_params(config))

  subsets: dict[int, loop.Buffer] = {}

  def real_buffer(n: int) -> loop.Buffer:
    if n not in subsets:
      subsets[n] = real_examples(config, data, n)
    return subsets[n]

  def synthetic_buffer(n: int, ratio: float) -> loop.Buffer:
    like = jax.tree.map(lambda x: x[:1], real_buffer(n).data)
    return loop.empty_buffer(like, loop.num_synthetic(ratio, n))

  def check_prompts(n: int, ratio: float) -> None:
    count = loop.num_synthetic(ratio, n)
    pairs = int(np.sum(np.minimum(np.asarray(real_buffer(n).data["num_captions"]),
                                  max_captions)))
    if count > pairs:
      raise ConfigError(f"lambda * n = {count} synthetic motions need as many distinct "
                        f"training captions, but the {n} real motions have {pairs}")

  programs: dict[tuple[int, float, str, bool], loop.GenerationFn] = {}

  def generation(n: int, ratio: float, variant: str, fused: bool | None = None):
    """The compiled generation of one run (one program when fused; config.loop.fused)."""
    fused = bool(config.loop.fused) if fused is None else fused
    if (n, ratio, variant, fused) not in programs:
      check_prompts(n, ratio)
      sample_fn, correct_fn, fit_fn = stages(n)
      programs[n, ratio, variant, fused] = loop.make_generation(
          variant=variant, sample_fn=sample_fn, correct_fn=correct_fn, fit_fn=fit_fn,
          fused=fused)
    run = programs[n, ratio, variant, fused]

    def run_checked(state: loop.LoopState):
      if model.mesh is not None:
        state = parallel.replicate(state, model.mesh)
      state, metrics, sampled = run(state)
      metrics = jax.device_get(metrics)
      if "fit_losses" in metrics:  # the mean in float64, as the host fit sums its losses
        metrics["train_loss"] = float(np.mean(np.asarray(metrics["fit_losses"], np.float64)))
      # What the host checks once the program is done (the program itself never waits).
      if int(metrics.pop("fit_nonfinite")):
        raise NonFiniteError(f"{variant} generation {int(state.generation)}: a training "
                             "loss or gradient became non-finite")
      if sampled is not None and not bool(jnp.all(jnp.isfinite(sampled.data["motion"]))):
        raise NonFiniteError("MDM sampling produced NaN/inf motions")
      return state, metrics, sampled

    return run_checked

  jitted_sample = functools.cache(lambda n: jax.jit(stages(n)[0]))

  def sample(state, template: loop.Buffer, key, n, ratio) -> loop.Buffer:
    check_prompts(n, ratio)
    return jitted_sample(n)(state, real_buffer(n), template, key)

  def fit(state, buffer: loop.Buffer, key, steps: int, *, checkpoint_dir=None, log=None):
    # Fits on n real motions: generation 0 (an eager fit: progress bar, checkpoints,
    # resume); the loop's generations fit inside their compiled program.
    if config.train.fresh_optimizer:
      state = fresh_optimizer(state)
    return model.fit(state, buffer, key, steps, capacity=fit_capacity(config, buffer.capacity),
                     checkpoint_dir=checkpoint_dir, log=log)

  def evaluate(state, key) -> dict[str, Any]:
    captured: list[tuple[np.ndarray, np.ndarray]] = []

    def generate_fn(captions, lengths, gen_key):
      motions = model.sample_captions(state, captions, lengths, gen_key)
      captured.append((np.asarray(motions), np.asarray(lengths)))
      return np.asarray(motions)

    scores = evaluation.evaluate(generate_fn, data.test, evaluator, key, eval_config)
    # Physics of the first replication's generations (one per prompt).
    num = int(scores.get("num_samples", eval_config.num_samples))
    motions = np.concatenate([m for m, _ in captured])[:num]
    lengths = np.concatenate([l for _, l in captured])[:num]
    physics = physics_summary(model.joints(jnp.asarray(motions), jnp.asarray(lengths)),
                              jnp.asarray(lengths))
    row = {"fid": scores["fid"],
           "r_precision": [scores["r_precision_top1"], scores["r_precision_top2"],
                           scores["r_precision_top3"]],
           "matching": scores["matching_score"], "diversity": scores["diversity"],
           "multimodality": scores.get("multimodality")}
    row.update(physics)
    for name, value in scores.items():
      if name.startswith("real_") or name.endswith("_ci95"):
        row[name.replace("matching_score", "matching")] = value
    return row

  def correction_floor(key) -> dict[str, Any]:
    real = evaluation.real_motion_generator(data.test)
    infos: list[Mapping[str, Any]] = []
    corrected: list[tuple[np.ndarray, np.ndarray]] = []

    def generate_fn(captions, lengths, key):
      del key  # the correction is deterministic
      lengths = jnp.asarray(lengths)
      fixed, _, info = correct_motions(model, physics(),
                                       jnp.asarray(real(captions, lengths, None)), lengths)
      infos.append(info)
      corrected.append((np.asarray(fixed), np.asarray(lengths)))
      return np.asarray(fixed)

    floor_config = eval_config.copy_and_resolve_references()
    floor_config.multimodality_prompts = 0  # real motions have one version per caption
    floor_config.num_repeats = 1
    scores = evaluation.evaluate(generate_fn, data.test, evaluator, key, floor_config)
    # The last batch is padded by repeating prompts: keep one motion per prompt.
    num = int(scores["num_samples"])
    motions = np.concatenate([m for m, _ in corrected])[:num]
    lengths = np.concatenate([l for _, l in corrected])[:num]
    physics_after = physics_summary(model.joints(jnp.asarray(motions), jnp.asarray(lengths)),
                                    jnp.asarray(lengths))
    stack = lambda name: np.concatenate(
        [np.asarray(i[name], np.float32) for i in infos])[:num]
    out = {name: float(scores[name]) for name in (
        "fid", "r_precision_top1", "r_precision_top2", "r_precision_top3", "matching_score",
        "diversity", "real_fid") + tuple(k for k in ("fid_ci95",) if k in scores)}
    out.update({k: physics_after[k] for k in ("float_mm", "penetrate_mm", "skate")})
    out.update(tracking_error_m=float(stack("tracking_error_m").mean()),
               fall_rate=float(stack("fell").mean()), num_samples=int(len(lengths)))
    out.update({name: float(stack(name).mean()) for name in CORRECTION_INFO
                if all(name in i for i in infos)})
    return out

  def render_prompts(state, key, path):
    captions = list(config.outputs.video_prompts)
    frames = min(model.max_frames, int(config.outputs.get("video_frames", 80)))
    lengths = np.full((len(captions),), frames, np.int32)
    motions = model.sample_captions(state, captions, lengths, key)
    joints = np.asarray(model.joints(motions, jnp.asarray(lengths)))
    _render([joints[i, :frames] for i in range(len(captions))], captions, path, config)

  def render_correction(before: loop.Buffer, after: loop.Buffer, path):
    count = min(int(config.outputs.correction_videos), before.capacity)
    lengths = before.data["lengths"][:count]
    joints_before = np.asarray(model.joints(before.data["motion"][:count], lengths))
    joints_after = np.asarray(model.joints(after.data["motion"][:count], lengths))
    clips, captions = [], []
    for i in range(count):
      caption = decode_caption(data.vocab, np.asarray(before.data["text_ids"][i, 0]))
      length = int(lengths[i])
      clips += [joints_before[i, :length], joints_after[i, :length]]
      captions += [f"sampled: {caption}", f"corrected: {caption}"]
    _render(clips, captions, path, config, groups=[i // 2 for i in range(len(clips))])

  return sweep.Components(
      real_buffer=real_buffer, synthetic_buffer=synthetic_buffer, init=model.init, fit=fit,
      sample=sample, correct=jax.jit(stages(sizes[0])[1]), evaluate=evaluate, generation=generation,
      save=lambda directory, state: save_train_state(
          directory, state, config, data.vocab.size, normalization),
      restore=lambda directory, template: restore_train_state(
          directory, template, config, data.vocab.size),
      render_prompts=render_prompts,
      render_correction=render_correction,
      correction_floor=correction_floor, resumable_fit=True)


def _render(clips: list[np.ndarray], captions: list[str], path: str,
            config: ml_collections.ConfigDict, groups: Sequence[int] | None = None) -> None:
  """`path`.mp4 (or .gif) of the clips side by side, and `path`.html, their interactive
  3-D view (clips of one group overlaid: a sample and its correction)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  render.render_motions(clips, captions, f"{path}.{config.outputs.video_format}", fps=20)
  group_titles = None
  if groups is not None:
    group_titles = [next(c.split(": ", 1)[-1] for c, g in zip(captions, groups) if g == k)
                    for k in sorted(set(groups))]
  viewer.write_viewer(f"{path}.html", clips, [c.split(": ", 1)[0] for c in captions]
                      if groups is not None else captions, groups=groups,
                      title=os.path.basename(path), group_titles=group_titles, fps=20)
