"""MDM, the Motion Diffusion Model (Tevet et al., ICLR 2023), in Flax.

A transformer encoder denoises a whole motion at once. The sequence is one condition token
(timestep embedding + text embedding) followed by one token per frame; the output at the
frame tokens is the model's estimate of the clean motion x0 (or of the noise). Padded frames
are excluded from attention by a key mask and their outputs are zeroed.

Text conditioning: either a learned encoder over word ids (`text_encoder='words'`, the
default) or a precomputed frozen sentence embedding (`text_encoder='embedding'`, e.g. the
MiniLM vectors of `selfconsume.data.text`). For classifier-free guidance the text embedding
of an example is zeroed where `drop_text` is True, as in MDM.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from selfconsume.diffusion import sampling
from selfconsume.diffusion.schedules import Schedule
from selfconsume.diffusion.schedules import make_schedule
from selfconsume.errors import ConfigError
from selfconsume.motion.frames import frame_mask

TEXT_ENCODERS = ("words", "embedding")
# Fields of the model config that change the parameter shapes or the function computed;
# a checkpoint whose values differ cannot be restored into this model.
ARCHITECTURE_FIELDS = ("feature_dim", "latent_dim", "num_layers", "num_heads", "ff_dim",
                       "activation", "text_encoder", "vocab_size", "text_width",
                       "text_layers")
# Defaults of the optional model config fields (the required ones are latent_dim,
# num_layers, num_heads, ff_dim).
MODEL_DEFAULTS = dict(feature_dim=263, dropout=0.1, activation="gelu", text_encoder="words",
                      text_width=0, text_layers=1, cond_drop_prob=0.1)


def resolved_model_config(model: ml_collections.ConfigDict, vocab_size: int
                          ) -> dict:
  """The full model config as a plain dict: defaults filled in and vocab_size set."""
  out = dict(MODEL_DEFAULTS)
  for name in ("latent_dim", "num_layers", "num_heads", "ff_dim"):
    if name not in model:
      raise ConfigError(f"config.model.{name} is required")
  out.update({k: model[k] for k in model.keys()})
  out["vocab_size"] = int(vocab_size)
  if not out["text_width"]:
    out["text_width"] = out["latent_dim"]
  if out["text_encoder"] not in TEXT_ENCODERS:
    raise ConfigError(f"config.model.text_encoder must be one of {TEXT_ENCODERS}, got "
                      f"{out['text_encoder']!r}")
  if out["latent_dim"] % out["num_heads"]:
    raise ConfigError(f"config.model.latent_dim ({out['latent_dim']}) must be divisible by "
                      f"num_heads ({out['num_heads']})")
  return out


def checkpoint_fingerprint(config: ml_collections.ConfigDict, vocab_size: int
                           ) -> dict[str, dict]:
  """What a checkpoint of this model records and must match on restore.

  The architecture fields of the resolved model config (they fix the parameter shapes and the
  function computed) and the diffusion settings the denoiser was trained for; dropout and the
  training settings may change between a save and a restore.
  """
  model = resolved_model_config(config.model, vocab_size)
  # `prediction` defaults to x0 as in `make_generate_fn`; a missing schedule field is None.
  diffusion = {"schedule": None, "num_steps": None, "prediction": "x0"}
  return {"model": {k: model[k] for k in ARCHITECTURE_FIELDS},
          "diffusion": {k: config.diffusion.get(k, default) for k, default in diffusion.items()}}


def build_model(model: ml_collections.ConfigDict, vocab_size: int) -> "MDM":
  """The MDM module described by `config.model` for a vocabulary of `vocab_size` words."""
  c = resolved_model_config(model, vocab_size)
  return MDM(**{k: c[k] for k in ARCHITECTURE_FIELDS + ("dropout",)})


def sinusoidal_embedding(positions: jnp.ndarray, dim: int) -> jnp.ndarray:
  """Transformer sinusoidal features of positions (...,) -> (..., dim) (sin | cos halves)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _activation(name: str) -> Callable[[jnp.ndarray], jnp.ndarray]:
  if name == "gelu":
    return lambda x: nn.gelu(x, approximate=False)
  if name == "relu":
    return nn.relu
  raise ConfigError(f"model.activation must be 'gelu' or 'relu', got {name!r}")


class EncoderLayer(nn.Module):
  """Post-norm transformer encoder layer, as torch.nn.TransformerEncoderLayer (MDM's)."""
  num_heads: int
  ff_dim: int
  dropout: float
  activation: str

  @nn.compact
  def __call__(self, x: jnp.ndarray, key_mask: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """x (B, S, D), key_mask (B, S) bool (True = attend) -> (B, S, D)."""
    attn_mask = key_mask[:, None, None, :]
    h = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout, deterministic=not train,
        name="attention")(x, x, mask=attn_mask)
    x = nn.LayerNorm(name="norm1")(x + nn.Dropout(self.dropout)(h, deterministic=not train))
    h = nn.Dense(self.ff_dim, name="ff1")(x)
    h = nn.Dropout(self.dropout)(_activation(self.activation)(h), deterministic=not train)
    h = nn.Dense(x.shape[-1], name="ff2")(h)
    return nn.LayerNorm(name="norm2")(x + nn.Dropout(self.dropout)(h, deterministic=not train))


class WordTextEncoder(nn.Module):
  """A small learned text encoder: word embeddings + transformer layers + masked mean pool."""
  vocab_size: int
  width: int
  num_layers: int
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, ids: jnp.ndarray, mask: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """ids (B, L) int32, mask (B, L) bool -> sentence embedding (B, width)."""
    if self.vocab_size <= 2:
      raise ConfigError(f"model.vocab_size must be set from the Vocabulary (> 2), got "
                        f"{self.vocab_size}")
    h = nn.Embed(self.vocab_size, self.width, name="embed")(ids)
    h = h + sinusoidal_embedding(jnp.arange(ids.shape[1]), self.width)
    # An empty caption still attends to its first (padding) position instead of nothing.
    attend = mask.at[:, 0].set(True)
    for i in range(self.num_layers):
      h = EncoderLayer(self.num_heads, 2 * self.width, self.dropout, "gelu",
                       name=f"layer{i}")(h, attend, train=train)
    m = mask[..., None].astype(h.dtype)
    return jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


class MDM(nn.Module):
  """The motion denoiser; build it with `build_model(config.model, vocab.size)`."""
  feature_dim: int
  latent_dim: int
  num_layers: int
  num_heads: int
  ff_dim: int
  activation: str
  text_encoder: str
  vocab_size: int
  text_width: int
  text_layers: int
  dropout: float

  @nn.compact
  def __call__(self, x: jnp.ndarray, t: jnp.ndarray, text: Mapping[str, jnp.ndarray],
               frame_mask: jnp.ndarray, *, train: bool = False,
               drop_text: jnp.ndarray | None = None) -> jnp.ndarray:
    """Predicts x0 (or eps) of a batch of noisy motions.

    Args:
      x: noisy normalised motions (B, frames, feature_dim).
      t: int diffusion timesteps (B,).
      text: {'ids': (B, L) int32, 'mask': (B, L) bool} for the word encoder, or
        {'embedding': (B, E)} for precomputed sentence embeddings.
      frame_mask: (B, frames) bool, True on real frames.
      train: enables dropout (needs the 'dropout' rng).
      drop_text: optional (B,) bool; True examples are unconditional (text embedding zeroed).
    Returns:
      (B, frames, feature_dim), zero on padded frames.
    """
    c = self
    d = c.latent_dim
    if c.text_encoder == "words":
      text_emb = WordTextEncoder(c.vocab_size, c.text_width, c.text_layers, c.num_heads,
                                 c.dropout, name="text_encoder")(
                                     text["ids"], text["mask"], train=train)
    elif c.text_encoder == "embedding":
      text_emb = text["embedding"].astype(jnp.float32)
    else:
      raise ConfigError(f"model.text_encoder must be one of {TEXT_ENCODERS}, got "
                        f"{c.text_encoder!r}")
    if drop_text is not None:
      text_emb = jnp.where(drop_text[:, None], 0.0, text_emb)
    text_emb = nn.Dense(d, name="embed_text")(text_emb)
    # MDM: the masked condition is a zero text vector, still passed through embed_text.
    t_emb = sinusoidal_embedding(t, d)
    t_emb = nn.Dense(d, name="time_mlp1")(t_emb)
    t_emb = nn.Dense(d, name="time_mlp2")(nn.silu(t_emb))
    cond = (t_emb + text_emb)[:, None, :]

    h = nn.Dense(d, name="embed_motion")(x)
    h = jnp.concatenate([cond, h], axis=1)
    h = h + sinusoidal_embedding(jnp.arange(h.shape[1]), d)
    h = nn.Dropout(c.dropout)(h, deterministic=not train)
    key_mask = jnp.concatenate([jnp.ones((x.shape[0], 1), bool), frame_mask.astype(bool)], 1)
    for i in range(c.num_layers):
      h = EncoderLayer(c.num_heads, c.ff_dim, c.dropout, c.activation,
                       name=f"layer{i}")(h, key_mask, train=train)
    out = nn.Dense(c.feature_dim, name="output")(h[:, 1:])
    return out * frame_mask[..., None].astype(out.dtype)


def schedule_from_config(config: ml_collections.ConfigDict) -> Schedule:
  """The training Schedule of `config.diffusion` (schedule name, num_steps)."""
  d = config.diffusion
  return make_schedule(d.schedule, d.num_steps, d.get("beta_start", 1e-4),
                       d.get("beta_end", 0.02))


def make_generate_fn(model: MDM, config: ml_collections.ConfigDict, max_frames: int,
                     sampling_config: ml_collections.ConfigDict | None = None
                     ) -> Callable[..., jnp.ndarray]:
  """Returns a jitted generate(params, text, lengths, key) -> normalised motions.

  generate(params, text, lengths (B,) int32, key) -> (B, max_frames, feature_dim): samples of
  `sampling_config` (default `config.sampling`: method 'ddim'|'ddpm', num_steps respaced
  steps, eta, guidance scale; guidance 1 is plain conditional sampling, no CFG)
  from the `config.diffusion` schedule, frames >= length zeroed; `text` as in MDM.__call__
  (e.g. {'ids': (B, L), 'mask': (B, L)}). The conditional and unconditional predictions share
  one forward pass over a doubled batch. Compiles once per batch size.
  """
  schedule = schedule_from_config(config)
  s = config.sampling if sampling_config is None else sampling_config
  scale = float(s.guidance)
  prediction = config.diffusion.get("prediction", "x0")

  @jax.jit
  def generate(params, text: Mapping[str, jnp.ndarray], lengths: jnp.ndarray,
               key: jax.Array) -> jnp.ndarray:
    batch = lengths.shape[0]
    mask = frame_mask(lengths, max_frames)
    text = dict(text)
    text2 = jax.tree.map(lambda a: jnp.concatenate([a, a], 0), text)
    mask2 = jnp.concatenate([mask, mask], 0)
    drop2 = jnp.concatenate([jnp.zeros((batch,), bool), jnp.ones((batch,), bool)])

    def predict(x_t, t):
      if scale == 1.0:
        return model.apply({"params": params}, x_t, t, text, mask)
      out = model.apply({"params": params}, jnp.concatenate([x_t, x_t], 0),
                        jnp.concatenate([t, t], 0), text2, mask2, drop_text=drop2)
      cond, uncond = out[:batch], out[batch:]
      return uncond + scale * (cond - uncond)

    return sampling.sample(
        predict, schedule, (batch, max_frames, model.feature_dim), key,
        prediction=prediction, method=s.method, num_steps=s.num_steps,
        eta=s.get("eta", 0.0), mask=mask)

  return generate
