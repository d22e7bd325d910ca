"""MotionModel: MDM in the shapes of one run.

It initialises a train state, fits it (eagerly, with a progress bar and resumable checkpoints,
for generation 0; or as a pure function inside a compiled generation), samples motions
(between generations with config.sampling; inside a generation with config.loop.sampling),
and converts between normalised features, raw features and joint positions.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from absl import logging as absl_logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from selfconsume import loop
from selfconsume import parallel
from selfconsume.data import text as text_lib
from selfconsume.errors import NonFiniteError
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import mdm
from selfconsume.humanml import training
from selfconsume.motion import features
from selfconsume.motion.frames import frame_mask


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
    self._template = training.create_train_state(config, jax.random.PRNGKey(0), vocab.size)
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
    return training.create_train_state(self.config, key, self.vocab.size)

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
      self._multi_steps[cache_key] = training.make_multi_step(
          lambda k, b: data_lib.training_batch(k, b, batch_size), per_call, sharding)
    multi_step = self._multi_steps[cache_key]
    calls = -(-steps // per_call)
    # multi_step donates its input state; the caller's (e.g. the shared generation 0) stays.
    state = jax.tree.map(jnp.copy, state)
    progress = training.FitProgress(self.config, self.vocab.size, checkpoint_dir,
                                    int(state.step), per_call, calls)
    state = progress.resume(state)
    # The same placement computed or restored: a resumed fit reuses the compiled steps.
    state, buffer = parallel.place((state, buffer), self.mesh)
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
        training.check_finite(metrics, first, state)
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
    params = parallel.place(state.sampling_params(), self.mesh)
    out = []
    for b, start in enumerate(range(0, num, self.batch_size)):
      rows = jnp.arange(start, start + self.batch_size) % num
      motions = self.generate(params,
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
      state = training.fresh_optimizer(state)
    batch_size = int(self.config.train.batch_size)
    state, metrics = training.fit_in_program(
        state, buffer, key, draw_batch=lambda k, b: data_lib.training_batch(k, b, batch_size),
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
