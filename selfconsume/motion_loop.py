"""The motion experiment's pieces of the self-consuming loop: data, MDM fitting and
sampling, physics correction, evaluation, checkpoints and videos.

`build_components(config, workdir)` wires the data (selfconsume.data), MDM
(selfconsume.models.mdm, selfconsume.train), the physics corrector (selfconsume.physics) and
the evaluator (selfconsume.evaluation) into the functions `experiments/humanml.py` drives
through `selfconsume.loop.run_generation`.

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
import math
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selfconsume import loop
from selfconsume import outputs
from selfconsume import parallel
from selfconsume.data import text as text_lib
from selfconsume.errors import CheckpointError
from selfconsume.errors import ConfigError
from selfconsume.errors import DataError
from selfconsume.errors import NonFiniteError

Example = dict[str, jax.Array]


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
  from selfconsume.data import procedural  # pylint: disable=g-import-not-at-top
  corpus_dir = config.data.corpus_dir or os.path.join(workdir, "corpus")
  return procedural.ensure_corpus(corpus_dir, int(config.data.corpus_size),
                                  int(config.data.corpus_seed))


def load_data(config: ml_collections.ConfigDict, workdir: str) -> MotionData:
  from selfconsume.data import humanml3d  # pylint: disable=g-import-not-at-top
  root = dataset_root(config, workdir)
  kwargs = dict(min_frames=int(config.data.min_frames), max_frames=int(config.data.max_frames))
  train = humanml3d.load(root, config.data.split, **kwargs)
  test = humanml3d.load(root, config.data.test_split, **kwargs)
  vocab = text_lib.Vocabulary.build(c for captions in train.captions for c in captions)
  return MotionData(train=train, test=test, vocab=vocab, root=root)


def load_subset(config: ml_collections.ConfigDict, data: MotionData, n: int) -> Any:
  """The n real training motions: the ids of config.data.subset_ids, or n drawn by seed."""
  from selfconsume.data import humanml3d  # pylint: disable=g-import-not-at-top
  subset_ids = None
  if config.data.subset_ids:
    try:
      with open(config.data.subset_ids) as f:
        subset_ids = [line.strip() for line in f if line.strip()]
    except OSError as e:
      raise DataError(f"config.data.subset_ids={config.data.subset_ids!r}: {e}") from e
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
  from selfconsume import checkpoint  # pylint: disable=g-import-not-at-top
  checkpointer = checkpoint.Checkpointer(directory, config, vocab_size,
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
  from selfconsume import checkpoint  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(directory):
    raise CheckpointError(f"{directory}: no checkpoint there")
  checkpointer = checkpoint.Checkpointer(directory, config, vocab_size)
  try:
    return checkpointer.restore(template)
  finally:
    checkpointer.close()


def write_run_files(workdir: str, config: ml_collections.ConfigDict, data: MotionData) -> None:
  """What experiments/sample.py needs besides a checkpoint: vocabulary and normalisation."""
  data.vocab.save(os.path.join(workdir, "vocab.json"))
  path = os.path.join(workdir, "normalization.npz")
  tmp = path + ".tmp.npz"
  np.savez(tmp, mean=np.asarray(data.train.mean, np.float32),
           std=np.asarray(data.train.std, np.float32))
  os.replace(tmp, path)
  outputs.write_json(os.path.join(workdir, "dataset.json"),
                     {"root": data.root, "fingerprint": data.train.fingerprint(),
                      "max_frames": int(config.data.max_frames),
                      "min_frames": int(config.data.min_frames)})


# ----------------------------------------------------------------------------- the pieces


class MotionModel:
  """MDM with its sampler, in the shapes of one run (compiled once per shape)."""

  def __init__(self, config: ml_collections.ConfigDict, vocab: text_lib.Vocabulary,
               mean: np.ndarray, std: np.ndarray):
    from selfconsume import train as train_lib  # pylint: disable=g-import-not-at-top
    from selfconsume.models import mdm  # pylint: disable=g-import-not-at-top
    self.config = config
    self.vocab = vocab
    self.max_frames = int(config.data.max_frames)
    self.max_len = int(config.text.max_len)
    self.batch_size = int(config.loop.sample_batch_size)
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self._train = train_lib
    self._template = train_lib.create_train_state(config, jax.random.PRNGKey(0), vocab.size)
    self.generate = mdm.make_generate_fn(self._template.model, config, self.max_frames)
    self._multi_steps: dict[tuple[int, int], Callable] = {}
    # Data parallel over every local device (and host): each batch is split over a 'data'
    # mesh axis, parameters and the training buffer are replicated. One device: no mesh.
    self.mesh = parallel.make_mesh() if jax.device_count() > 1 else None
    if self.mesh is not None:
      parallel.check_batch_size(int(config.train.batch_size), self.mesh)

  def init(self, key: jax.Array) -> Any:
    return self._train.create_train_state(self.config, key, self.vocab.size)

  def fit(self, state: Any, buffer: loop.Buffer, key: jax.Array, steps: int, *,
          capacity: int = 0, desc: str = "fit") -> tuple[Any, dict[str, Any]]:
    """`steps` optimizer steps on batches drawn from `buffer`; returns mean loss.

    A buffer smaller than `capacity` is padded with invalid slots first, so that real-only
    and real + synthetic training sets share one compiled step.
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
    # multi_step donates its input state; the caller's (e.g. the shared generation 0) stays.
    state = jax.tree.map(jnp.copy, state)
    if self.mesh is not None:
      state, buffer = parallel.replicate((state, buffer), self.mesh)
    import tqdm  # pylint: disable=g-import-not-at-top
    losses = []
    calls = -(-steps // per_call)
    for _ in tqdm.trange(calls, desc=desc, leave=False, unit_scale=per_call):
      key, call_key = jax.random.split(key)
      first = int(state.step)
      state, metrics = multi_step(state, buffer, call_key)
      metrics = jax.device_get(metrics)
      self._train.check_finite(metrics, first, state)
      losses.append(np.asarray(metrics["loss"]))
    return state, {"train_loss": float(np.mean(np.concatenate(losses)))}

  def sample(self, state: Any, text_ids: jax.Array, text_mask: jax.Array, lengths: jax.Array,
             key: jax.Array) -> jax.Array:
    """Normalised motions (B, frames, 263) for any B, in fixed-size batches."""
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

  def sample_captions(self, state: Any, captions: Sequence[str], lengths: np.ndarray,
                      key: jax.Array) -> jax.Array:
    ids, mask = text_lib.encode(list(captions), self.vocab, self.max_len)
    return self.sample(state, jnp.asarray(ids), jnp.asarray(mask),
                       jnp.asarray(lengths, jnp.int32), key)

  def denormalize(self, motions: jax.Array, lengths: jax.Array) -> jax.Array:
    raw = motions * self.std + self.mean
    return raw * _frame_mask(lengths, motions.shape[1])[..., None]

  def normalize(self, raw: jax.Array, lengths: jax.Array) -> jax.Array:
    motions = (raw - self.mean) / self.std
    return motions * _frame_mask(lengths, raw.shape[1])[..., None]

  def joints(self, motions: jax.Array, lengths: jax.Array) -> jax.Array:
    """Joint positions (B, frames, 22, 3) of normalised motions."""
    from selfconsume.motion import features  # pylint: disable=g-import-not-at-top
    return features.features_to_joints(self.denormalize(motions, lengths), lengths)


def _frame_mask(lengths: jax.Array, frames: int) -> jax.Array:
  return (jnp.arange(frames)[None, :] < jnp.asarray(lengths)[:, None]).astype(jnp.float32)


def physics_summary(joints: jax.Array, lengths: jax.Array) -> dict[str, float]:
  """Mean float_mm, penetrate_mm, skate (and jerk) of motions (B, frames, 22, 3)."""
  from selfconsume.physics import metrics as physics_metrics  # pylint: disable=g-import-not-at-top
  values = physics_metrics.physics_metrics(joints, lengths)
  return {name: float(np.mean(np.asarray(v))) for name, v in values.items()}


def corrector_params(config: ml_collections.ConfigDict) -> Any:
  """The physics corrector's settings: CorrectorParams with config.correction.physics."""
  from selfconsume.physics import params as params_lib  # pylint: disable=g-import-not-at-top
  overrides = dict(config.correction.physics.to_dict())
  # The loop mixes corrected and sampled motions itself (config.correction.gamma).
  overrides["gamma"] = math.inf
  return params_lib.from_config(overrides)


def correct_motions(model: MotionModel, physics: Any, key: jax.Array, motions: jax.Array,
                    lengths: jax.Array) -> tuple[jax.Array, jax.Array, Mapping[str, Any]]:
  """Physics-corrects normalised motions (B, frames, 263).

  Returns:
    (corrected normalised motions, usable (B,) bool, the corrector's info dict). Samples
    whose simulation was not finite are returned uncorrected and marked not usable.
  """
  from selfconsume.physics import corrector  # pylint: disable=g-import-not-at-top
  raw = model.denormalize(motions, lengths)
  fixed_raw, info = corrector.correct(key, raw, lengths, physics)
  fixed = model.normalize(jnp.asarray(fixed_raw, jnp.float32), lengths)
  usable = ~jnp.asarray(info.get("nonfinite", jnp.zeros(lengths.shape, bool)), bool)
  usable = usable & jnp.all(jnp.isfinite(fixed), axis=(1, 2))
  fixed = jnp.where(usable[:, None, None], jnp.nan_to_num(fixed), motions)
  return fixed, usable, info


def decode_caption(vocab: text_lib.Vocabulary, ids: np.ndarray) -> str:
  return " ".join(vocab.words[i] for i in np.asarray(ids) if i > 0)


def build_components(config: ml_collections.ConfigDict, workdir: str):
  """The Components of experiments/humanml.py for the real motion experiment."""
  from experiments import humanml  # pylint: disable=g-import-not-at-top
  from selfconsume import evaluation  # pylint: disable=g-import-not-at-top
  from selfconsume.models import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top

  data = load_data(config, workdir)
  write_run_files(workdir, config, data)
  model = MotionModel(config, data.vocab, data.train.mean, data.train.std)
  normalization = {"mean": np.asarray(data.train.mean, np.float32),
                   "std": np.asarray(data.train.std, np.float32)}
  max_len = int(config.text.max_len)
  max_captions = max(1, max(len(c) for c in data.train.captions))
  max_captions = min(max_captions, int(config.text.get("max_captions", 8)))
  evaluator = evaluator_lib.get_or_train_evaluator(
      data.train, config.eval.evaluator, config.eval.evaluator_cache or None,
      log_dir=os.path.join(workdir, "tensorboard", "evaluator"))
  eval_config = evaluation.resolve_config(config.eval)
  eval_config.generate_batch_size = model.batch_size
  gamma = float(config.correction.gamma)
  # CorrectorParams, built on the first correction (importing the simulator is slow).
  physics = functools.cache(lambda: corrector_params(config))

  subsets: dict[int, loop.Buffer] = {}
  current = {"n": int(config.loop.sizes[0])}  # the size the driver works on

  def real_buffer(n: int) -> loop.Buffer:
    current["n"] = n
    if n not in subsets:
      subset = load_subset(config, data, n)
      subsets[n] = loop.make_buffer(encode_examples(
          subset.motions, subset.lengths, subset.captions, data.vocab, max_len, max_captions))
    return subsets[n]

  def synthetic_buffer(n: int, ratio: float) -> loop.Buffer:
    like = jax.tree.map(lambda x: x[:1], real_buffer(n).data)
    return loop.empty_buffer(like, loop.num_synthetic(ratio, n))

  def sample(state, template: loop.Buffer, key, n, ratio) -> loop.Buffer:
    del ratio
    count = template.capacity
    real = real_buffer(n)
    pairs = int(jnp.sum(jnp.minimum(real.data["num_captions"], max_captions)))
    if count > pairs:
      raise ConfigError(f"lambda * n = {count} synthetic motions need as many distinct "
                        f"training captions, but the {n} real motions have {pairs}")
    prompt_key, sample_key = jax.random.split(key)
    rows, slots = draw_prompts(prompt_key, real, count)
    ids = real.data["text_ids"][rows, slots]
    lengths = real.data["lengths"][rows]
    motions = model.sample(state, ids, ids > 0, lengths, sample_key)
    text_ids = jnp.zeros((count,) + real.data["text_ids"].shape[1:], jnp.int32)
    text_ids = text_ids.at[:, 0].set(ids)
    return loop.make_buffer({"motion": motions, "lengths": lengths, "text_ids": text_ids,
                             "text_mask": text_ids > 0,
                             "num_captions": jnp.ones((count,), jnp.int32)})

  def correct(key, buffer: loop.Buffer):
    lengths = buffer.data["lengths"]
    correct_key, mix_key = jax.random.split(key)
    fixed, usable, info = correct_motions(model, physics(), correct_key, buffer.data["motion"],
                                          lengths)
    mixed, replaced = loop.replace_with_probability(mix_key, buffer.data["motion"], fixed,
                                                    gamma)
    out = loop.Buffer(data=dict(buffer.data, motion=mixed), valid=buffer.valid)
    metrics = {"tracking_error_m": float(np.mean(np.asarray(info["tracking_error_m"]))),
               "fall_rate": float(np.mean(np.asarray(info["fell"], np.float32))),
               "corrected_fraction": float(np.mean(np.asarray(replaced & usable)))}
    if "nonfinite" in info:
      metrics["nonfinite_rate"] = float(np.mean(np.asarray(info["nonfinite"], np.float32)))
    return out, metrics

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
    row.update({k: physics[k] for k in ("float_mm", "penetrate_mm", "skate") if k in physics})
    if "jerk" in physics:
      row["jerk"] = physics["jerk"]
    for name, value in scores.items():
      if name.startswith("real_") or (name.endswith("_ci95") and eval_config.num_repeats > 1):
        row[name] = value
    return row

  def correction_floor(key) -> dict[str, Any]:
    real = evaluation.real_motion_generator(data.test)
    infos: list[Mapping[str, Any]] = []
    corrected: list[tuple[np.ndarray, np.ndarray]] = []

    def generate_fn(captions, lengths, correct_key):
      lengths = jnp.asarray(lengths)
      fixed, _, info = correct_motions(model, physics(), correct_key,
                                       jnp.asarray(real(captions, lengths, None)), lengths)
      infos.append(info)
      corrected.append((np.asarray(fixed), np.asarray(lengths)))
      return np.asarray(fixed)

    floor_config = eval_config.copy_and_resolve_references()
    floor_config.multimodality_prompts = 0  # real motions have one version per caption
    floor_config.num_repeats = 1
    scores = evaluation.evaluate(generate_fn, data.test, evaluator, key, floor_config)
    motions = np.concatenate([m for m, _ in corrected])
    lengths = np.concatenate([l for _, l in corrected])
    physics_after = physics_summary(model.joints(jnp.asarray(motions), jnp.asarray(lengths)),
                                    jnp.asarray(lengths))
    stack = lambda name: np.concatenate([np.asarray(i[name], np.float32) for i in infos])
    out = {name: float(scores[name]) for name in (
        "fid", "r_precision_top1", "r_precision_top2", "r_precision_top3", "matching_score",
        "diversity", "real_fid")}
    out.update({k: physics_after[k] for k in ("float_mm", "penetrate_mm", "skate")})
    out.update(tracking_error_m=float(stack("tracking_error_m").mean()),
               fall_rate=float(stack("fell").mean()), num_samples=int(len(lengths)))
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
    _render(clips, captions, path, config)

  def fit(state, buffer: loop.Buffer, key, steps: int):
    # Every training set of size n fits in its n real + floor(max lambda * n) synthetic
    # slots; padding to that shares one compiled step between all of them.
    n = current["n"]
    extra = max(loop.num_synthetic(float(r), n) for r in config.loop.lambdas)
    return model.fit(state, buffer, key, steps, capacity=real_buffer(n).capacity + extra)

  return humanml.Components(
      real_buffer=real_buffer, synthetic_buffer=synthetic_buffer, init=model.init, fit=fit,
      sample=sample, correct=correct, evaluate=evaluate,
      save=lambda directory, state: save_train_state(
          directory, state, config, data.vocab.size, normalization),
      restore=lambda directory, template: restore_train_state(
          directory, template, config, data.vocab.size),
      render_prompts=render_prompts,
      render_correction=render_correction,
      correction_floor=correction_floor)


def _render(clips: list[np.ndarray], captions: list[str], path: str,
            config: ml_collections.ConfigDict) -> None:
  from selfconsume.motion import render  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  render.render_motions(clips, captions, f"{path}.{config.outputs.video_format}", fps=20)
