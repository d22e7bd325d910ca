"""Text-motion evaluator: a motion encoder and a text encoder trained contrastively.

The standard text-to-motion metrics (FID, R-precision, matching score, diversity,
multimodality; Guo et al. 2022) are computed on the embeddings of a frozen pair of encoders.
The original encoders cannot be downloaded here, so we train our own on whichever dataset is in
use and cache them under a key derived from the dataset's contents and this config; numbers are
then comparable across generations, variants and runs on the same data.

Motion encoder: normalised features (batch, frames, 263) -> linear -> two stride-2 temporal
convolutions (frames / 4) -> pre-LN transformer layers with a padding mask -> masked mean pool ->
linear -> L2-normalised embedding (batch, embed_dim).
Text encoder: word ids (batch, tokens) -> embedding + positions -> transformer layers -> masked
mean pool -> linear -> L2-normalised embedding (batch, embed_dim).
Loss: symmetric InfoNCE where every pair with an identical caption in the batch is a positive
(templated corpora repeat captions; counting those as negatives would fight the data).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from selfconsume import checkpoint
from selfconsume import metric_writers
from selfconsume import parallel
from selfconsume.data import text as text_lib
from selfconsume.errors import CheckpointError, ConfigError, DataError, NonFiniteError
from selfconsume.motion.frames import frame_mask

FEATURE_DIM = 263
# Bumped whenever the architecture or the cache layout changes: it enters the cache key, so an
# old cache is never found (the evaluator is retrained), and a saved evaluator's fingerprint,
# so an old copy is refused. 2: selfconsume.checkpoint (orbax) instead of msgpack + npz files.
CACHE_VERSION = 2
# The params file of version 1, to name such a directory when it is met.
_LEGACY_PARAMS_FILE = "params.msgpack"


def default_config() -> ml_collections.ConfigDict:
  """Evaluator architecture and training; sized to train in a few minutes on 2 CPU cores."""
  c = ml_collections.ConfigDict()
  c.width = 128              # transformer width of both encoders
  c.embed_dim = 64           # shared embedding space (small: FID's covariances need n >> dim)
  c.motion_layers = 2
  c.text_layers = 2
  c.num_heads = 4
  c.mlp_ratio = 2
  c.dropout = 0.1
  c.text_max_len = 24        # word tokens per caption (longer captions are truncated)
  c.temperature = 0.07       # InfoNCE softmax temperature on cosine similarities
  c.batch_size = 64
  c.num_steps = 1500
  c.learning_rate = 1e-3
  c.warmup_steps = 200
  c.weight_decay = 1e-4
  c.grad_clip = 1.0
  c.seed = 0
  c.embed_batch_size = 128   # fixed batch shape used when embedding (one compile)
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A tiny evaluator for tests: trains in seconds."""
  c = default_config()
  c.width = 32
  c.embed_dim = 32
  c.motion_layers = 1
  c.text_layers = 1
  c.num_heads = 2
  c.batch_size = 32
  c.num_steps = 150
  c.warmup_steps = 20
  c.learning_rate = 2e-3
  c.embed_batch_size = 64
  return c


def resolve_config(config: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
  """`default_config()` overridden by the fields of a possibly partial `config`, checked.

  Unknown fields are a ConfigError (a typo would otherwise silently train the default).
  """
  resolved = default_config()
  for name, value in (config or {}).items():
    if name not in resolved:
      raise ConfigError(f"unknown evaluator field {name!r}; known: {sorted(resolved)}")
    resolved[name] = value
  _check_config(resolved)
  return resolved


def _check_config(config: ml_collections.ConfigDict) -> None:
  for name in ("width", "embed_dim", "num_heads", "text_max_len", "batch_size", "num_steps",
               "embed_batch_size"):
    if int(config[name]) < 1:
      raise ConfigError(f"evaluator.{name} must be >= 1, got {config[name]}")
  if config.width % config.num_heads:
    raise ConfigError(f"evaluator.width ({config.width}) must be divisible by "
                      f"evaluator.num_heads ({config.num_heads})")
  if not 0.0 <= config.dropout < 1.0:
    raise ConfigError(f"evaluator.dropout must be in [0, 1), got {config.dropout}")
  if config.temperature <= 0:
    raise ConfigError(f"evaluator.temperature must be > 0, got {config.temperature}")


# ----------------------------------------------------------------------------- modules


class TransformerLayer(nn.Module):
  """Pre-LayerNorm self-attention + MLP block over (batch, length, width) with a key mask."""
  num_heads: int
  mlp_ratio: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    width = x.shape[-1]
    attention_mask = nn.make_attention_mask(jnp.ones_like(mask), mask)
    h = nn.LayerNorm()(x)
    h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout,
                                        deterministic=not train)(h, h, mask=attention_mask)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.LayerNorm()(x)
    h = nn.Dense(width * self.mlp_ratio)(h)
    h = nn.gelu(h)
    h = nn.Dense(width)(h)
    return x + nn.Dropout(self.dropout, deterministic=not train)(h)


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over axis 1 of x (batch, length, width) where mask (batch, length) is True."""
  weights = mask.astype(x.dtype)[..., None]
  return jnp.sum(x * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


def _l2_normalize(x: jax.Array) -> jax.Array:
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


class MotionEncoder(nn.Module):
  """(batch, frames, 263) normalised features + (batch, frames) mask -> (batch, embed_dim)."""
  width: int
  embed_dim: int
  num_layers: int
  num_heads: int
  mlp_ratio: int
  dropout: float

  @nn.compact
  def __call__(self, motions: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    x = motions * mask[..., None].astype(motions.dtype)
    x = nn.Dense(self.width)(x)
    # Two stride-2 convolutions: frames -> frames / 4 (T2M's movement encoder also works on
    # 4-frame units). Output step j covers input frames 2j..2j+4, valid if frame 2j is.
    for _ in range(2):
      x = nn.gelu(nn.Conv(self.width, kernel_size=(5,), strides=(2,), padding="SAME")(x))
      mask = mask[:, ::2]
    positions = self.param("positions", nn.initializers.normal(0.02), (x.shape[1], self.width))
    x = x + positions[None]
    for _ in range(self.num_layers):
      x = TransformerLayer(self.num_heads, self.mlp_ratio, self.dropout)(x, mask, train=train)
    x = nn.LayerNorm()(x)
    return _l2_normalize(nn.Dense(self.embed_dim)(_masked_mean(x, mask)))


class TextEncoder(nn.Module):
  """(batch, tokens) word ids + (batch, tokens) mask -> (batch, embed_dim)."""
  vocab_size: int
  width: int
  embed_dim: int
  num_layers: int
  num_heads: int
  mlp_ratio: int
  dropout: float

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    x = nn.Embed(self.vocab_size, self.width)(ids)
    positions = self.param("positions", nn.initializers.normal(0.02), (ids.shape[1], self.width))
    x = x + positions[None]
    for _ in range(self.num_layers):
      x = TransformerLayer(self.num_heads, self.mlp_ratio, self.dropout)(x, mask, train=train)
    x = nn.LayerNorm()(x)
    return _l2_normalize(nn.Dense(self.embed_dim)(_masked_mean(x, mask)))


class DualEncoder(nn.Module):
  """Both encoders under one parameter tree: params['motion'], params['text']."""
  vocab_size: int
  width: int
  embed_dim: int
  motion_layers: int
  text_layers: int
  num_heads: int
  mlp_ratio: int
  dropout: float

  def setup(self):
    self.motion = MotionEncoder(self.width, self.embed_dim, self.motion_layers, self.num_heads,
                                self.mlp_ratio, self.dropout)
    self.text = TextEncoder(self.vocab_size, self.width, self.embed_dim, self.text_layers,
                            self.num_heads, self.mlp_ratio, self.dropout)

  def __call__(self, motions, frame_mask, ids, token_mask, *, train: bool):
    return (self.motion(motions, frame_mask, train=train),
            self.text(ids, token_mask, train=train))

  def embed_motion(self, motions, frame_mask):
    return self.motion(motions, frame_mask, train=False)

  def embed_text(self, ids, token_mask):
    return self.text(ids, token_mask, train=False)


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> DualEncoder:
  return DualEncoder(vocab_size=vocab_size, width=config.width, embed_dim=config.embed_dim,
                     motion_layers=config.motion_layers, text_layers=config.text_layers,
                     num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
                     dropout=config.dropout)


# ----------------------------------------------------------------------------- loss


def contrastive_loss(motion_emb: jax.Array, text_emb: jax.Array, caption_ids: jax.Array,
                     temperature: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Symmetric multi-positive InfoNCE.

  Args:
    motion_emb: (batch, dim) L2-normalised motion embeddings.
    text_emb: (batch, dim) L2-normalised text embeddings; row i describes motion i.
    caption_ids: (batch, tokens) word ids; rows with identical ids are mutual positives.
    temperature: softmax temperature on cosine similarities.

  Returns:
    (scalar loss, {'loss', 'accuracy'}) with accuracy = share of texts whose nearest motion is
    a positive.
  """
  logits = text_emb @ motion_emb.T / temperature                      # (batch, batch)
  positive = jnp.all(caption_ids[:, None, :] == caption_ids[None, :, :], axis=-1)
  positive = positive | jnp.eye(logits.shape[0], dtype=bool)
  targets = positive / jnp.sum(positive, axis=1, keepdims=True)
  text_to_motion = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=1), axis=1)
  motion_to_text = -jnp.sum(targets.T * jax.nn.log_softmax(logits.T, axis=1), axis=1)
  loss = 0.5 * (jnp.mean(text_to_motion) + jnp.mean(motion_to_text))
  nearest = jnp.argmax(logits, axis=1)
  accuracy = jnp.mean(positive[jnp.arange(logits.shape[0]), nearest])
  return loss, {"loss": loss, "accuracy": accuracy}


# ----------------------------------------------------------------------------- evaluator


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """A frozen trained evaluator.

  Attributes:
    params: parameter tree of `DualEncoder`.
    config: the evaluator config it was built with.
    vocab: word vocabulary of its text encoder.
    max_frames: frames per motion it was trained on; shorter inputs are zero-padded.
    mean, std: (263,) normalisation of the training data; inputs must use the same.
    fingerprint: fingerprint of the dataset it was trained on.
    info: training summary (steps, final loss, seconds, ...).
  """
  params: Any
  config: ml_collections.ConfigDict
  vocab: text_lib.Vocabulary
  max_frames: int
  mean: np.ndarray
  std: np.ndarray
  fingerprint: str
  info: dict

  @property
  def model(self) -> DualEncoder:
    return build_model(self.config, self.vocab.size)

  def embed_motions(self, motions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Embeds normalised motions (num, frames, 263) with lengths (num,) -> (num, embed_dim)."""
    motions = np.asarray(motions, np.float32)
    lengths = np.asarray(lengths, np.int32)
    if motions.ndim != 3 or motions.shape[-1] != FEATURE_DIM:
      raise DataError(f"motions must be (num, frames, {FEATURE_DIM}), got {motions.shape}")
    if lengths.shape != motions.shape[:1]:
      raise DataError(f"lengths must be ({motions.shape[0]},), got {lengths.shape}")
    if motions.shape[1] > self.max_frames:
      raise DataError(f"motions have {motions.shape[1]} frames; this evaluator was trained "
                      f"on at most {self.max_frames}")
    if not np.all(np.isfinite(motions)):
      raise NonFiniteError(f"motions of shape {motions.shape} contain NaN or inf")
    pad = self.max_frames - motions.shape[1]
    if pad:
      motions = np.pad(motions, ((0, 0), (0, pad), (0, 0)))
    mask = np.asarray(frame_mask(lengths, self.max_frames))
    return _batched(functools.partial(_embed_motion, self.model, self.params),
                    (motions, mask), self.config.embed_batch_size)

  def embed_texts(self, captions: Sequence[str]) -> np.ndarray:
    """Embeds captions (num,) -> (num, embed_dim)."""
    ids, mask = text_lib.encode(list(captions), self.vocab, self.config.text_max_len)
    return _batched(functools.partial(_embed_text, self.model, self.params), (ids, mask),
                    self.config.embed_batch_size)


@functools.partial(jax.jit, static_argnums=0)
def _embed_motion(model: DualEncoder, params, motions, frame_mask):
  return model.apply({"params": params}, motions, frame_mask, method=DualEncoder.embed_motion)


@functools.partial(jax.jit, static_argnums=0)
def _embed_text(model: DualEncoder, params, ids, token_mask):
  return model.apply({"params": params}, ids, token_mask, method=DualEncoder.embed_text)


def _batched(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int) -> np.ndarray:
  """Applies fn to fixed-size batches (the last one zero-padded) and concatenates the rows."""
  num = arrays[0].shape[0]
  outputs = []
  for start in range(0, num, batch_size):
    chunk = [a[start:start + batch_size] for a in arrays]
    size = chunk[0].shape[0]
    if size < batch_size:
      chunk = [np.concatenate([c, np.zeros((batch_size - size,) + c.shape[1:], c.dtype)])
               for c in chunk]
    outputs.append(np.asarray(fn(*chunk))[:size])
  if not outputs:
    return np.zeros((0, 0), np.float32)
  return np.concatenate(outputs).astype(np.float32)


# ----------------------------------------------------------------------------- training


def _flatten_captions(captions: Sequence[Sequence[str]], vocab: text_lib.Vocabulary,
                      max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """All captions of all motions as ids (total, max_len), with per-motion start and count."""
  counts = np.array([len(c) for c in captions], np.int32)
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    raise DataError(f"{empty.size} motions have no caption (first index {empty[0]})")
  ids, _ = text_lib.encode([c for caps in captions for c in caps], vocab, max_len)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
  return ids, starts, counts


def train_evaluator(dataset, config: ml_collections.ConfigDict, *,
                    log_dir: str | None = None, progress: bool = True) -> Evaluator:
  """Trains an evaluator on `dataset` (a MotionDataset: normalised motions, lengths, captions).

  Each step draws `batch_size` distinct motions and one of each motion's captions at random.
  The whole step (batch gather, forward, loss, update) is one jitted pure function.
  `config` may be partial (see `resolve_config`).
  """
  config = resolve_config(config)
  motions = np.asarray(dataset.motions, np.float32)
  num, max_frames, dim = motions.shape
  if dim != FEATURE_DIM:
    raise DataError(f"{dataset.root}: motions must have {FEATURE_DIM} features, got {dim}")
  if num < config.batch_size:
    raise ConfigError(f"evaluator.batch_size ({config.batch_size}) exceeds the number of "
                      f"training motions ({num}) in {dataset.root} [{dataset.split}]")
  vocab = text_lib.Vocabulary.build(c for caps in dataset.captions for c in caps)
  caption_ids, starts, counts = _flatten_captions(dataset.captions, vocab, config.text_max_len)
  lengths = np.asarray(dataset.lengths, np.int32)
  model = build_model(config, vocab.size)

  key = jax.random.PRNGKey(config.seed)
  init_key, key = jax.random.split(key)
  params = model.init(init_key, jnp.zeros((1, max_frames, dim)), jnp.ones((1, max_frames), bool),
                      jnp.zeros((1, config.text_max_len), jnp.int32),
                      jnp.ones((1, config.text_max_len), bool), train=False)["params"]
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, min(config.warmup_steps, config.num_steps), config.num_steps)
  tx = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                   optax.adamw(schedule, weight_decay=config.weight_decay))
  opt_state = tx.init(params)

  data = {"motions": jnp.asarray(motions), "lengths": jnp.asarray(lengths),
          "caption_ids": jnp.asarray(caption_ids), "starts": jnp.asarray(starts),
          "counts": jnp.asarray(counts)}
  step_fn = jax.jit(functools.partial(_train_step, model, tx, config.batch_size,
                                      config.temperature))
  writer = None
  if log_dir:
    writer = metric_writers.MetricsWriter(log_dir, tensorboard_name="")
  start_time = time.time()
  metrics = {}
  with tqdm.trange(config.num_steps, desc="evaluator", disable=not progress) as bar:
    for step in bar:
      key, step_key = jax.random.split(key)
      params, opt_state, metrics = step_fn(params, opt_state, data, step_key)
      if step % 100 == 0 or step == config.num_steps - 1:
        metrics = jax.device_get(metrics)
        if not np.isfinite(metrics["loss"]):
          raise NonFiniteError(f"evaluator loss is {metrics['loss']} at step {step}")
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.2f}")
        if writer is not None:
          writer.scalars(step, metrics, prefix="evaluator/")
  if writer is not None:
    writer.close()
  info = {"steps": int(config.num_steps), "final_loss": float(metrics["loss"]),
          "final_batch_accuracy": float(metrics["accuracy"]),
          "train_seconds": time.time() - start_time, "num_motions": int(num),
          "num_captions": int(caption_ids.shape[0]), "vocab_size": int(vocab.size),
          "dataset_root": str(dataset.root), "dataset_split": str(dataset.split)}
  return Evaluator(params=jax.device_get(params), config=ml_collections.ConfigDict(config),
                   vocab=vocab, max_frames=max_frames, mean=np.asarray(dataset.mean, np.float32),
                   std=np.asarray(dataset.std, np.float32), fingerprint=dataset.fingerprint(),
                   info=info)


def _train_step(model: DualEncoder, tx: optax.GradientTransformation, batch_size: int,
                temperature: float, params, opt_state, data: dict, key: jax.Array):
  """One pure optimisation step; `data` holds the whole training set on device."""
  index_key, caption_key, dropout_key = jax.random.split(key, 3)
  num, max_frames = data["motions"].shape[:2]
  index = jax.random.choice(index_key, num, (batch_size,), replace=False)
  pick = jax.random.uniform(caption_key, (batch_size,))
  caption_row = data["starts"][index] + jnp.minimum(
      (pick * data["counts"][index]).astype(jnp.int32), data["counts"][index] - 1)
  ids = data["caption_ids"][caption_row]
  motions = data["motions"][index]
  mask = frame_mask(data["lengths"][index], max_frames)

  def loss_fn(p):
    motion_emb, text_emb = model.apply({"params": p}, motions, mask, ids, ids > 0,
                                       train=True, rngs={"dropout": dropout_key})
    return contrastive_loss(motion_emb, text_emb, ids, temperature)

  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, metrics


# ----------------------------------------------------------------------------- cache


def cache_key(fingerprint: str, config: ml_collections.ConfigDict) -> str:
  """Key of an evaluator trained on data with `fingerprint` under `config`.

  `embed_batch_size` only shapes inference batches, so it does not enter the key.
  """
  trained = {k: v for k, v in config.to_dict().items() if k != "embed_batch_size"}
  payload = json.dumps({"version": CACHE_VERSION, "fingerprint": fingerprint,
                        "config": trained}, sort_keys=True, default=str)
  return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _checkpoint_fingerprint(data_fingerprint: str) -> dict[str, Any]:
  """What a saved evaluator must match to be loaded: this code's cache layout and its data."""
  return {"cache_version": CACHE_VERSION, "data_fingerprint": data_fingerprint}


def is_saved(path: str) -> bool:
  """Whether `path` holds a complete evaluator in this code's format."""
  return checkpoint.latest_step(path) is not None


def save_evaluator(evaluator: Evaluator, path: str) -> str:
  """Writes the evaluator into checkpoint directory `path` (selfconsume.checkpoint).

  The directory appears only once complete (built aside, then renamed). If `path` already
  holds an evaluator (another process finished first) it is left as it is.
  """
  if is_saved(path):
    return path
  checkpoint.save(
      path, {"params": evaluator.params, "mean": np.asarray(evaluator.mean, np.float32),
             "std": np.asarray(evaluator.std, np.float32)},
      _checkpoint_fingerprint(evaluator.fingerprint),
      {"key": cache_key(evaluator.fingerprint, evaluator.config),
       "config": evaluator.config.to_dict(), "max_frames": int(evaluator.max_frames),
       "vocab": list(evaluator.vocab.words), "info": evaluator.info})
  return path


def load_evaluator(path: str, dataset=None) -> Evaluator:
  """Loads an evaluator saved by `save_evaluator`.

  If `dataset` is given, its fingerprint must be the one the evaluator was trained on;
  otherwise CheckpointError (an evaluator of other data would give incomparable numbers).
  Also a one-line CheckpointError when `path` holds no evaluator, a truncated one, or one of
  another cache version (e.g. the msgpack files of version 1).
  """
  if os.path.exists(os.path.join(path, _LEGACY_PARAMS_FILE)):
    raise CheckpointError(f"{path}: an evaluator saved by an older version of this code "
                          f"(cache version 1, now {CACHE_VERSION}); delete it to retrain")
  saved, extra = checkpoint.read_meta(path)
  data_fingerprint = (saved.get("data_fingerprint") if dataset is None
                      else dataset.fingerprint())
  tree = checkpoint.restore(path, None, _checkpoint_fingerprint(data_fingerprint))
  try:
    config = ml_collections.ConfigDict(extra["config"])
    vocab = text_lib.Vocabulary(tuple(extra["vocab"]))
    max_frames, info = int(extra["max_frames"]), dict(extra["info"])
  except (KeyError, TypeError, ValueError) as e:
    raise CheckpointError(f"{path}: incomplete evaluator metadata ({type(e).__name__}: {e}); "
                          "truncated or corrupt?") from e
  return Evaluator(params=tree["params"], config=config, vocab=vocab, max_frames=max_frames,
                   mean=tree["mean"], std=tree["std"], fingerprint=data_fingerprint, info=info)


def default_cache_dir() -> str:
  return os.path.join(os.path.expanduser("~"), ".cache", "selfconsume", "evaluators")


def get_or_train_evaluator(dataset, config: ml_collections.ConfigDict,
                           cache_dir: str | None = None, *, log_dir: str | None = None,
                           progress: bool = True) -> Evaluator:
  """The evaluator for `dataset` (the training split) and `config`, trained on first use.

  Cached in `cache_dir`/evaluator-KEY with KEY = cache_key(dataset.fingerprint(), config);
  `config` may be partial (see `resolve_config`), `cache_dir` '' or None means
  ~/.cache/selfconsume/evaluators.
  """
  config = resolve_config(config)
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, f"evaluator-{cache_key(dataset.fingerprint(), config)}")
  if not parallel.agreed(is_saved(path)):
    # Under jax.distributed process 0 trains and caches it; the others load the cached copy.
    if parallel.is_file_writer():
      evaluator = train_evaluator(dataset, config, log_dir=log_dir, progress=progress)
      save_evaluator(evaluator, path)
    parallel.sync(f"evaluator {path}")
  return load_evaluator(path, dataset)
