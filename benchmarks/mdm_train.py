r"""MDM training speed: our jitted JAX step vs the same architecture in PyTorch (CPU).

  python -m benchmarks.mdm_train                  # batch 64 x 196 frames, default + paper
  python -m benchmarks.mdm_train --paper_frames=40 --paper_steps=1   # quicker

Both sides run the same model (post-norm transformer encoder, GELU, dropout 0.1, a learned
word-level text encoder, sinusoidal timestep MLP), the same masked x0 loss at random
timesteps with text dropout, AdamW and gradient clipping, on the same batch shapes. The
last line is JSON: {"ratio_vs_torch_default", "ratio_vs_torch_paper", "steps_per_s"}
(ratios = JAX steps/s / PyTorch steps/s; steps_per_s is JAX at the default size).
"""

from __future__ import annotations

import json
import math
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs import humanml as humanml_config
from selfconsume.humanml import mdm
from selfconsume.humanml import training

_BATCH = flags.DEFINE_integer("batch", 64, "Motions per training step.")
_FRAMES = flags.DEFINE_integer("frames", 196, "Frames per motion.")
_PAPER_FRAMES = flags.DEFINE_integer(
    "paper_frames", 0, "Frames per motion at the paper size (0: --frames). On a 2-core CPU "
    "one paper-size step at 196 frames takes minutes.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps at the default size.")
_PAPER_STEPS = flags.DEFINE_integer("paper_steps", 2, "Timed steps at the paper size.")
_SKIP_PAPER = flags.DEFINE_bool("skip_paper", False, "Only the default size.")

VOCAB, TEXT_LEN = 200, 20


def make_config(preset: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = humanml_config.get_config(preset).model
  c.diffusion = ml_collections.ConfigDict(dict(schedule="cosine", num_steps=1000,
                                               prediction="x0"))
  c.train = ml_collections.ConfigDict(dict(learning_rate=1e-4, grad_clip=1.0,
                                           weight_decay=0.0))
  c.text = ml_collections.ConfigDict(dict(max_len=TEXT_LEN))
  return c


def make_batch(batch: int, frames: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  lengths = rng.integers(frames // 2, frames + 1, batch).astype(np.int32)
  motion = rng.normal(size=(batch, frames, 263)).astype(np.float32)
  motion *= (np.arange(frames)[None] < lengths[:, None])[..., None]
  ids = rng.integers(2, VOCAB, (batch, TEXT_LEN)).astype(np.int32)
  return {"motion": motion, "lengths": lengths, "text_ids": ids,
          "text_mask": np.ones((batch, TEXT_LEN), bool)}


def time_jax(preset: str, batch: dict[str, np.ndarray], steps: int) -> float:
  """JAX training steps per second (compile excluded)."""
  state = training.create_train_state(make_config(preset), jax.random.PRNGKey(0), VOCAB)
  b = jax.tree.map(jnp.asarray, batch)
  state, m = training.jit_train_step(state, b, jax.random.PRNGKey(1))
  jax.block_until_ready(m)
  start = time.perf_counter()
  for i in range(steps):
    state, m = training.jit_train_step(state, b, jax.random.PRNGKey(2 + i))
  jax.block_until_ready((state.params, m))
  return steps / (time.perf_counter() - start)


def time_torch(preset: str, batch: dict[str, np.ndarray], steps: int) -> float:
  """PyTorch training steps per second of the same architecture and loss."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  cfg = mdm.resolved_model_config(make_config(preset).model, VOCAB)
  d, tw = cfg["latent_dim"], cfg["text_width"]

  def sinusoid(pos: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = pos.float()[..., None] * freqs
    return torch.cat([torch.sin(ang), torch.cos(ang)], -1)

  class TorchMDM(nn.Module):
    """The same network as selfconsume.humanml.mdm.MDM."""

    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(VOCAB, tw)
      self.text_layers = nn.TransformerEncoder(nn.TransformerEncoderLayer(
          tw, cfg["num_heads"], 2 * tw, cfg["dropout"], activation="gelu",
          batch_first=True), cfg["text_layers"], enable_nested_tensor=False)
      self.embed_text = nn.Linear(tw, d)
      self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
      self.embed_motion = nn.Linear(263, d)
      self.layers = nn.TransformerEncoder(nn.TransformerEncoderLayer(
          d, cfg["num_heads"], cfg["ff_dim"], cfg["dropout"], activation="gelu",
          batch_first=True), cfg["num_layers"], enable_nested_tensor=False)
      self.drop = nn.Dropout(cfg["dropout"])
      self.output = nn.Linear(d, 263)

    def forward(self, x, t, ids, tmask, fmask, drop_text):
      h = self.embed(ids) + sinusoid(torch.arange(ids.shape[1]), tw)
      h = self.text_layers(h, src_key_padding_mask=~tmask)
      m = tmask[..., None].float()
      text = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
      text = torch.where(drop_text[:, None], torch.zeros_like(text), text)
      cond = (self.time(sinusoid(t, d)) + self.embed_text(text))[:, None]
      h = torch.cat([cond, self.embed_motion(x)], 1)
      h = self.drop(h + sinusoid(torch.arange(h.shape[1]), d))
      keys = torch.cat([torch.ones_like(fmask[:, :1]), fmask], 1)
      h = self.layers(h, src_key_padding_mask=~keys)
      return self.output(h[:, 1:]) * fmask[..., None].float()

  torch.manual_seed(0)
  model = TorchMDM()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
  acp = torch.tensor(np.asarray(mdm.schedule_from_config(make_config(preset))
                                .alphas_cumprod))
  x0 = torch.tensor(batch["motion"])
  bsz, frames = x0.shape[:2]
  fmask = torch.arange(frames)[None] < torch.tensor(batch["lengths"])[:, None]
  ids, tmask = torch.tensor(batch["text_ids"]), torch.tensor(batch["text_mask"])

  def step():
    t = torch.randint(0, 1000, (bsz,))
    a = acp[t][:, None, None]
    x_t = (a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0)) * fmask[..., None]
    drop = torch.rand(bsz) < 0.1
    out = model(x_t, t, ids, tmask, fmask, drop)
    m = fmask[..., None].float().expand_as(out)
    loss = (((out - x0) ** 2 * m).sum((1, 2)) / m.sum((1, 2))).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss

  model.train()
  step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return steps / (time.perf_counter() - start)


def main(argv):
  del argv
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
  except ImportError as e:
    raise SystemExit("benchmarks.mdm_train needs the CPU build of PyTorch as its baseline: "
                     "pip install torch") from e
  batch = make_batch(_BATCH.value, _FRAMES.value)
  result = {}
  jax_default = time_jax("", batch, _STEPS.value)
  torch_default = time_torch("", batch, _STEPS.value)
  print(f"default MDM (4x128) batch {_BATCH.value}x{_FRAMES.value}: jax {jax_default:.3f} "
        f"steps/s, torch {torch_default:.3f} steps/s", flush=True)
  result["ratio_vs_torch_default"] = jax_default / torch_default
  if _SKIP_PAPER.value:
    result["ratio_vs_torch_paper"] = None
  else:
    frames = _PAPER_FRAMES.value or _FRAMES.value
    paper_batch = make_batch(_BATCH.value, frames)
    jax_paper = time_jax("paper", paper_batch, _PAPER_STEPS.value)
    torch_paper = time_torch("paper", paper_batch, _PAPER_STEPS.value)
    print(f"paper MDM (8x512) batch {_BATCH.value}x{frames}: jax {jax_paper:.3f} "
          f"steps/s, torch {torch_paper:.3f} steps/s", flush=True)
    result["ratio_vs_torch_paper"] = jax_paper / torch_paper
  result["steps_per_s"] = jax_default
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
