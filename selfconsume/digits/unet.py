"""A small class-conditional U-Net for denoising digit images.

The paper's MNIST DDPM uses a U-Net with 128 base features; the CPU presets use 32. The class
label is embedded like the timestep and added to it; label `num_classes` is the "no label"
token that classifier-free guidance and label dropout use.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding of integer timesteps t (B,) -> (B, dim)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def _groups(channels: int) -> int:
  return math.gcd(8, channels)


class ResBlock(nn.Module):
  """GroupNorm-SiLU-Conv twice, with the conditioning embedding added in between."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
    h = nn.silu(nn.GroupNorm(num_groups=_groups(x.shape[-1]))(x))
    h = nn.Conv(self.features, (3, 3))(h)
    h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
    h = nn.silu(nn.GroupNorm(num_groups=_groups(self.features))(h))
    h = nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1))(x)
    return x + h


class ConditionalUNet(nn.Module):
  """eps-prediction U-Net: (x_t (B, H, W, C), t (B,), label (B,)) -> (B, H, W, C).

  Attributes:
    num_classes: real classes; label == num_classes means unconditional.
    features: channels at the first level (128 in the paper).
    multipliers: channel multiplier per level; H and W must be divisible by
      2^(len(multipliers) - 1).
  """
  num_classes: int = 10
  features: int = 32
  multipliers: Sequence[int] = (1, 2)

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, label: jax.Array) -> jax.Array:
    emb_dim = 4 * self.features
    emb = timestep_embedding(t, self.features)
    emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(emb)))
    emb = emb + nn.Embed(self.num_classes + 1, emb_dim)(label)

    h = nn.Conv(self.features, (3, 3))(x)
    skips = [h]
    for level, mult in enumerate(self.multipliers):
      h = ResBlock(self.features * mult)(h, emb)
      skips.append(h)
      if level < len(self.multipliers) - 1:
        h = nn.Conv(self.features * mult, (3, 3), strides=(2, 2))(h)
        skips.append(h)
    h = ResBlock(self.features * self.multipliers[-1])(h, emb)
    h = ResBlock(self.features * self.multipliers[-1])(h, emb)
    for level, mult in reversed(list(enumerate(self.multipliers))):
      h = ResBlock(self.features * mult)(jnp.concatenate([h, skips.pop()], -1), emb)
      if level > 0:
        h = ResBlock(self.features * mult)(jnp.concatenate([h, skips.pop()], -1), emb)
        b, height, width, c = h.shape
        h = jax.image.resize(h, (b, 2 * height, 2 * width, c), "nearest")
        h = nn.Conv(self.features * self.multipliers[level - 1], (3, 3))(h)
    h = ResBlock(self.features)(jnp.concatenate([h, skips.pop()], -1), emb)
    h = nn.silu(nn.GroupNorm(num_groups=_groups(self.features))(h))
    return nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)
