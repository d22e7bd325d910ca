"""Tests of the MDM module and its guided generation function (tiny sizes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import humanml as humanml_config
from selfconsume.errors import ConfigError
from selfconsume.humanml import mdm
from selfconsume.motion.frames import frame_mask

FRAMES, VOCAB, TEXT_LEN = 12, 30, 6


def tiny_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = humanml_config.get_config("smoke").model
  c.diffusion = ml_collections.ConfigDict(dict(schedule="cosine", num_steps=100,
                                               prediction="x0"))
  c.sampling = ml_collections.ConfigDict(dict(method="ddim", num_steps=5, guidance=2.5,
                                              eta=0.0))
  return c


@pytest.fixture(scope="module")
def setup():
  config = tiny_config()
  model = mdm.build_model(config.model, VOCAB)
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (3, FRAMES, 263))
  text = {"ids": jax.random.randint(key, (3, TEXT_LEN), 2, VOCAB),
          "mask": jnp.ones((3, TEXT_LEN), bool)}
  lengths = jnp.array([FRAMES, 7, 3])
  mask = frame_mask(lengths, FRAMES)
  params = model.init(key, x, jnp.zeros(3, jnp.int32), text, mask)["params"]
  apply = jax.jit(lambda p, x, t, text, m, drop: model.apply({"params": p}, x, t, text, m,
                                                            drop_text=drop))
  return config, model, params, apply, x, text, mask, lengths


def test_output_shape_and_padding_zero(setup):
  _, _, params, apply, x, text, mask, _ = setup
  out = apply(params, x, jnp.array([0, 50, 99]), text, mask, jnp.zeros(3, bool))
  assert out.shape == (3, FRAMES, 263)
  assert np.all(np.asarray(out)[~np.asarray(mask)] == 0.0)
  assert np.all(np.isfinite(out))


def test_padded_frames_do_not_leak(setup):
  _, _, params, apply, x, text, mask, _ = setup
  t = jnp.array([10, 10, 10])
  garbage = jnp.where(mask[..., None], x, 100.0)
  a = apply(params, x, t, text, mask, jnp.zeros(3, bool))
  b = apply(params, garbage, t, text, mask, jnp.zeros(3, bool))
  np.testing.assert_allclose(a, b, atol=1e-4)


def test_dropped_text_is_unconditional(setup):
  _, _, params, apply, x, text, mask, _ = setup
  t = jnp.array([10, 10, 10])
  other = {"ids": (text["ids"] + 3) % VOCAB, "mask": text["mask"]}
  drop = jnp.array([True, False, True])
  a = np.asarray(apply(params, x, t, text, mask, drop))
  b = np.asarray(apply(params, x, t, other, mask, drop))
  np.testing.assert_allclose(a[[0, 2]], b[[0, 2]], atol=1e-5)
  assert np.abs(a[1] - b[1]).max() > 1e-4
  # Timestep conditioning matters too.
  c = np.asarray(apply(params, x, jnp.array([90, 90, 90]), text, mask, drop))
  assert np.abs(a - c).max() > 1e-4


def test_guided_generation_64_by_196_respects_lengths(setup):
  config, model, params, *_ = setup
  generate = mdm.make_generate_fn(model, config, max_frames=196)
  lengths = jnp.asarray(np.random.default_rng(0).integers(40, 197, 64), jnp.int32)
  text = {"ids": jnp.ones((64, TEXT_LEN), jnp.int32), "mask": jnp.ones((64, TEXT_LEN), bool)}
  out = np.asarray(generate(params, text, lengths, jax.random.PRNGKey(1)))
  assert out.shape == (64, 196, 263)
  assert np.all(np.isfinite(out))
  mask = np.arange(196)[None] < np.asarray(lengths)[:, None]
  assert np.all(out[~mask] == 0.0)
  assert np.all(np.abs(out[mask]).sum(-1) > 0)


def test_bad_model_config_is_config_error():
  c = humanml_config.get_config("smoke").model
  c.num_heads = 3
  with pytest.raises(ConfigError, match="num_heads"):
    mdm.build_model(c, VOCAB)
  c = humanml_config.get_config("smoke").model
  c.text_encoder = "clip"
  with pytest.raises(ConfigError, match="text_encoder"):
    mdm.build_model(c, VOCAB)
