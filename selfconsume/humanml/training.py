"""Training MDM: the train state, one pure optimizer step, fused multi-step calls, the loop,
and its checkpoints (`Checkpointer`, `save_train_state`, a long fit's resumable `FitProgress`).

A batch is a dict of fixed-shape arrays:
  'motion'  (B, frames, 263) float32, normalised, zero-padded
  'lengths' (B,) int32, real frames per motion
  'text_ids' (B, L) int32 and 'text_mask' (B, L) bool   (word encoder), or
  'text_embedding' (B, E) float32                       (precomputed sentence embedding)

`train_step(state, batch, key)` is pure and jit-able. A step whose loss or gradient is not
finite leaves the state unchanged and reports `nonfinite = 1`; the outer `train` loop turns
that into a NonFiniteError, so no non-finite weights are ever checkpointed.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from typing import Any, Callable, Mapping

from absl import logging as absl_logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from selfconsume import checkpoint
from selfconsume import outputs
from selfconsume import parallel
from selfconsume.diffusion import gaussian_diffusion
from selfconsume.diffusion.schedules import Schedule
from selfconsume.errors import CheckpointError
from selfconsume.errors import ConfigError
from selfconsume.errors import NonFiniteError
from selfconsume.humanml import mdm
from selfconsume.motion.frames import frame_mask

Batch = Mapping[str, jnp.ndarray]
# Optional train-config fields and their defaults (batch_size, learning_rate are required).
TRAIN_DEFAULTS = dict(weight_decay=0.0, grad_clip=1.0, warmup_steps=0, decay="constant",
                      decay_steps=0, end_lr_factor=0.0, ema_decay=0.0, b1=0.9, b2=0.999)


@flax.struct.dataclass
class TrainState:
  """Everything one optimizer step reads and writes.

  Array fields (saved by checkpoint.py): step, params, opt_state, ema_params (a copy of
  params when EMA is off). Static fields: the model, optimizer, learning-rate schedule and
  the loss settings (rebuilt from the config on restore).
  """
  step: jnp.ndarray
  params: Any
  opt_state: Any
  ema_params: Any
  schedule: Schedule
  model: mdm.MDM = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  lr_fn: Callable[[jnp.ndarray], jnp.ndarray] = flax.struct.field(pytree_node=False)
  prediction: str = flax.struct.field(pytree_node=False, default="x0")
  cond_drop_prob: float = flax.struct.field(pytree_node=False, default=0.1)
  ema_decay: float = flax.struct.field(pytree_node=False, default=0.0)

  def sampling_params(self):
    """The weights to sample with: the EMA weights when EMA is on."""
    return self.ema_params if self.ema_decay > 0 else self.params


def train_settings(config: ml_collections.ConfigDict) -> dict:
  """config.train as a plain dict with the optional fields' defaults filled in."""
  out = dict(TRAIN_DEFAULTS)
  for name in ("learning_rate",):
    if name not in config.train:
      raise ConfigError(f"config.train.{name} is required")
  out.update({k: config.train[k] for k in config.train.keys()})
  if out["decay"] not in ("constant", "linear", "cosine"):
    raise ConfigError(f"config.train.decay must be 'constant', 'linear' or 'cosine', got "
                      f"{out['decay']!r}")
  if not 0.0 <= out["ema_decay"] < 1.0:
    raise ConfigError(f"config.train.ema_decay must be in [0, 1), got {out['ema_decay']}")
  return out


def learning_rate_schedule(train: Mapping[str, Any]) -> optax.Schedule:
  """Linear warmup over `warmup_steps`, then constant, linear or cosine decay to
  `end_lr_factor * learning_rate` at `decay_steps` (total steps including warmup)."""
  lr, warmup = float(train["learning_rate"]), int(train["warmup_steps"])
  end = lr * float(train["end_lr_factor"])
  decay_steps = max(int(train["decay_steps"]) - warmup, 1)
  if train["decay"] == "constant":
    after = optax.constant_schedule(lr)
  elif train["decay"] == "linear":
    after = optax.linear_schedule(lr, end, decay_steps)
  else:
    after = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def make_optimizer(train: Mapping[str, Any]
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with gradient clipping by global norm (`grad_clip` <= 0 disables it)."""
  lr_fn = learning_rate_schedule(train)
  parts = []
  if train["grad_clip"] and train["grad_clip"] > 0:
    parts.append(optax.clip_by_global_norm(float(train["grad_clip"])))
  parts.append(optax.adamw(lr_fn, b1=train["b1"], b2=train["b2"],
                           weight_decay=float(train["weight_decay"])))
  return optax.chain(*parts), lr_fn


def dummy_text(model: mdm.MDM, batch: int, max_text_len: int,
               embedding_dim: int = 384) -> dict[str, jnp.ndarray]:
  """Zero text inputs of the right structure, for initialisation and shape checks."""
  if model.text_encoder == "words":
    return {"ids": jnp.zeros((batch, max_text_len), jnp.int32),
            "mask": jnp.zeros((batch, max_text_len), bool)}
  return {"embedding": jnp.zeros((batch, embedding_dim), jnp.float32)}


def text_inputs(batch: Batch) -> dict[str, jnp.ndarray]:
  """The model's `text` argument from a batch dict (word ids or an embedding)."""
  if "text_embedding" in batch:
    return {"embedding": batch["text_embedding"]}
  return {"ids": batch["text_ids"], "mask": batch["text_mask"]}


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array, vocab_size: int,
                       *, text_embedding_dim: int = 384) -> TrainState:
  """A fresh TrainState for `config` (sections model, diffusion, train, text).

  Args:
    config: config.model (MDM sizes), config.diffusion (schedule, num_steps, prediction),
      config.train (learning_rate, weight_decay, grad_clip, optional warmup_steps, decay,
      decay_steps, end_lr_factor, ema_decay), config.text.max_len.
    key: PRNG key for the initial weights.
    vocab_size: size of the word vocabulary (ignored by the 'embedding' text encoder).
    text_embedding_dim: width of precomputed sentence embeddings (text_encoder='embedding').
  """
  model = mdm.build_model(config.model, vocab_size)
  train = train_settings(config)
  tx, lr_fn = make_optimizer(train)
  text = dummy_text(model, 1, int(config.text.max_len), text_embedding_dim)
  params = jax.jit(lambda k: model.init(
      k, jnp.zeros((1, 4, model.feature_dim)), jnp.zeros((1,), jnp.int32), text,
      jnp.ones((1, 4), bool))["params"])(key)
  prediction = config.diffusion.get("prediction", "x0")
  if prediction not in gaussian_diffusion.PREDICTIONS:
    raise ConfigError(f"config.diffusion.prediction must be one of "
                      f"{gaussian_diffusion.PREDICTIONS}, got {prediction!r}")
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params), schedule=mdm.schedule_from_config(config),
      model=model, tx=tx, lr_fn=lr_fn, prediction=prediction,
      cond_drop_prob=float(config.model.get("cond_drop_prob", 0.1)),
      ema_decay=float(train["ema_decay"]))


def fresh_optimizer(state: Any) -> Any:
  """The paper fine-tunes each generation with a new AdamW: moments and bias correction
  start afresh, only the weights carry over."""
  return state.replace(opt_state=state.tx.init(state.params))



def loss_fn(params, state: TrainState, batch: Batch, key: jax.Array
            ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """The masked denoising loss of `batch` under `params`, with text dropout and dropout."""
  drop_key, loss_key, dropout_key = jax.random.split(key, 3)
  motion = batch["motion"]
  mask = frame_mask(batch["lengths"], motion.shape[1])
  drop_text = jax.random.bernoulli(drop_key, state.cond_drop_prob, (motion.shape[0],))
  text = text_inputs(batch)

  def predict(x_t, t):
    return state.model.apply({"params": params}, x_t, t, text, mask, train=True,
                             drop_text=drop_text, rngs={"dropout": dropout_key})

  return gaussian_diffusion.training_loss(predict, state.schedule, motion, loss_key,
                                          prediction=state.prediction, mask=mask)


def train_step(state: TrainState, batch: Batch, key: jax.Array
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One AdamW step on `batch`. Pure; jit it (or use `jit_train_step`).

  Returns (new state, metrics) with scalar metrics loss, grad_norm, learning_rate and
  nonfinite (1.0 when the loss or gradient was NaN/inf; the state is then left unchanged).
  """
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, key)
  grad_norm = optax.global_norm(grads)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if state.ema_decay > 0:
    ema = optax.incremental_update(params, state.ema_params, 1.0 - state.ema_decay)
  else:
    ema = params
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
  new_state = state.replace(step=state.step + ok.astype(jnp.int32),
                            params=keep(params, state.params),
                            opt_state=keep(opt_state, state.opt_state),
                            ema_params=keep(ema, state.ema_params))
  metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": state.lr_fn(state.step),
             "nonfinite": 1.0 - ok.astype(jnp.float32)}
  return new_state, metrics


jit_train_step = jax.jit(train_step, donate_argnums=(0,))


def _multi_step(state: TrainState, data: Any, key: jax.Array, *,
                draw_batch: Callable[[jax.Array, Any], Batch], num_steps: int,
                batch_sharding: Any = None):
  def body(s, k):
    batch_key, step_key = jax.random.split(k)
    batch = draw_batch(batch_key, data)
    if batch_sharding is not None:
      # Data parallel: each device computes the loss of its slice of the batch.
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    return train_step(s, batch, step_key)
  return jax.lax.scan(body, state, jax.random.split(key, num_steps))


# Compiled once per (draw_batch function, num_steps, shapes): keep draw_batch the same
# function object across calls (a module-level function or one made once) to reuse it.
_jit_multi_step = jax.jit(_multi_step, static_argnames=("draw_batch", "num_steps", "batch_sharding"),
                          donate_argnums=(0,))


def make_multi_step(draw_batch: Callable[[jax.Array, Any], Batch], num_steps: int,
                    batch_sharding: Any = None
                    ) -> Callable[..., tuple[TrainState, dict[str, jnp.ndarray]]]:
  """Fuses `num_steps` optimizer steps into one jitted call (a lax.scan).

  Returns multi_step(state, data, key) -> (state, metrics each (num_steps,)), where every
  step draws its batch with `draw_batch(key, data)` (e.g. a Buffer sampler), on device.
  The state argument is donated. With `batch_sharding` (parallel.batch_sharding(mesh)) each
  drawn batch is split over the devices; state and data should then be replicated.
  """
  return functools.partial(_jit_multi_step, draw_batch=draw_batch, num_steps=num_steps,
                           batch_sharding=batch_sharding)


def fit_in_program(state: TrainState, data: Any, key: jax.Array, *,
                   draw_batch: Callable[[jax.Array, Any], Batch], num_steps: int,
                   steps_per_call: int, batch_sharding: Any = None
                   ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """`num_steps` optimizer steps (rounded up to whole calls) as one scan, to run inside a
  jitted program (a fused generation) with no host round trip.

  Call c of `steps_per_call` steps draws from fold_in(key, c), exactly as the eager fits
  (`make_multi_step` called once per c) draw, so both run the same steps.

  Returns:
    (state, metrics each (calls, steps_per_call)).
  """
  per_call = max(1, min(steps_per_call, num_steps))
  calls = -(-num_steps // per_call)

  def call(s, c):
    return _multi_step(s, data, jax.random.fold_in(key, c), draw_batch=draw_batch,
                       num_steps=per_call, batch_sharding=batch_sharding)

  return jax.lax.scan(call, state, jnp.arange(calls, dtype=jnp.uint32))


def check_finite(metrics: Mapping[str, np.ndarray], first_step: int, state: TrainState,
                 checkpoint_note: str = "") -> None:
  """Raises NonFiniteError if any step in the fetched `metrics` (arrays (n,)) was not finite.

  The error carries `.state`, the last good train state (non-finite steps never update it).
  """
  bad = np.flatnonzero(np.asarray(metrics["nonfinite"]).reshape(-1) > 0)
  if bad.size:
    step = first_step + int(bad[0])
    loss = float(np.asarray(metrics["loss"]).reshape(-1)[bad[0]])
    err = NonFiniteError(
        f"training loss/gradient became non-finite at step {step} (loss={loss}); the train "
        f"state was not updated by that step{checkpoint_note}")
    err.state = state
    raise err


def train(state: TrainState, data: Any, draw_batch: Callable[[jax.Array, Any], Batch],
          num_steps: int, key: jax.Array, *, steps_per_call: int = 50, log_every: int = 50,
          writer: Any = None, checkpointer: Any = None, checkpoint_every: int = 0,
          progress: bool = True, desc: str = "train", mesh: Any = None
          ) -> tuple[TrainState, list[dict[str, float]]]:
  """Runs `num_steps` optimizer steps in fused calls of `steps_per_call`.

  Args:
    state: the TrainState to continue from. Its buffers are donated: use the returned state.
    data: a pytree of arrays that `draw_batch(key, data) -> batch` samples from.
    num_steps: optimizer steps to run (rounded up to whole calls).
    key: PRNG key of this run.
    log_every: steps between tensorboardX/tqdm updates (rounded to whole calls).
    writer: optional metric_writers.MetricsWriter: DESC/loss, learning_rate, grad_norm,
      steps_per_s against the step.
    checkpointer: optional `Checkpointer`; saves every `checkpoint_every` steps
      (rounded to whole calls) and at the end, only after the steps were checked finite.
    mesh: optional parallel.make_mesh() mesh: state and data are replicated over it and
      every batch is split over its devices (data parallel).
  Returns:
    (state, history): one dict of mean metrics per log interval (with 'step').
  Raises:
    NonFiniteError: a step produced NaN/inf; `.state` is the last good state and the last
      checkpoint on disk is intact.
  """

  steps_per_call = max(1, min(steps_per_call, num_steps))
  calls = -(-num_steps // steps_per_call)
  if mesh is not None:
    state, data = parallel.replicate((state, data), mesh)
    multi_step = make_multi_step(draw_batch, steps_per_call, parallel.batch_sharding(mesh))
  else:
    multi_step = make_multi_step(draw_batch, steps_per_call)
  history: list[dict[str, float]] = []
  pending: list[dict[str, jnp.ndarray]] = []
  bar = tqdm(total=calls * steps_per_call, desc=desc, disable=not progress, leave=False)
  t0, steps_since_log = time.perf_counter(), 0
  first_unchecked = int(state.step)
  last_saved = checkpointer.latest_step() if checkpointer is not None else None

  def flush(state):
    nonlocal pending, t0, steps_since_log, first_unchecked
    fetched = jax.device_get(pending)
    merged = {k: np.concatenate([np.asarray(m[k]).reshape(-1) for m in fetched])
              for k in fetched[0]}
    note = (f"; the last checkpoint (step {last_saved}) is intact"
            if last_saved is not None else "")
    check_finite(merged, first_unchecked, state, note)
    elapsed = time.perf_counter() - t0
    row = {k: float(np.mean(v)) for k, v in merged.items() if k != "nonfinite"}
    row["steps_per_s"] = steps_since_log / max(elapsed, 1e-9)
    row["step"] = int(state.step)
    history.append(row)
    if writer is not None:
      writer.scalars(row["step"], {k: v for k, v in row.items() if k != "step"},
                     prefix=f"{desc}/")
    bar.set_postfix(loss=f"{row['loss']:.4f}")
    pending, steps_since_log = [], 0
    first_unchecked = row["step"]
    t0 = time.perf_counter()

  try:
    for call in range(calls):
      key, call_key = jax.random.split(key)
      state, metrics = multi_step(state, data, call_key)
      pending.append(metrics)
      steps_since_log += steps_per_call
      bar.update(steps_per_call)
      done = (call + 1) * steps_per_call
      last = call == calls - 1
      save_now = checkpointer is not None and (
          last or (checkpoint_every and done % checkpoint_every < steps_per_call))
      if last or save_now or done % log_every < steps_per_call:
        flush(state)
      if save_now:
        checkpointer.save(state)
        last_saved = int(state.step)
  finally:
    bar.close()
  return state, history


class Checkpointer(checkpoint.StepCheckpointer):
  """Numbered checkpoints of one MDM training run (TrainState) in `directory`.

  Each step saves the state's step, params, opt_state and ema_params, and records the MDM
  fingerprint (`mdm.checkpoint_fingerprint`: architecture and diffusion settings), the full
  config and the vocabulary size.

  Args:
    directory: where the step directories live (created if missing).
    config: the run's config (sections model, diffusion, ...).
    vocab_size: the word vocabulary size the model was built with.
    normalization: optional {'mean': (263,), 'std': (263,)} saved with every step.
    max_to_keep: keep only the newest this many steps (None or <= 0 keeps all).
  """

  def __init__(self, directory: str | os.PathLike, config: ml_collections.ConfigDict,
               vocab_size: int, *, normalization: Mapping[str, np.ndarray] | None = None,
               max_to_keep: int | None = None):
    super().__init__(directory, mdm.checkpoint_fingerprint(config, vocab_size),
                     extra={"config": config, "vocab_size": int(vocab_size)},
                     normalization=normalization, max_to_keep=max_to_keep)
    self.config = config
    self.vocab_size = vocab_size

  def _tree(self, state: Any) -> dict[str, Any]:
    # The TrainState's model and optimizer are code, not arrays: they come from `state`.
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
            "ema_params": state.ema_params}

  def _untree(self, state: Any, arrays: Any) -> Any:
    return state.replace(step=arrays["step"], params=arrays["params"],
                         opt_state=arrays["opt_state"], ema_params=arrays["ema_params"])


def save_train_state(directory: str, state: Any, config: ml_collections.ConfigDict,
                     vocab_size: int, normalization: Mapping[str, np.ndarray] | None = None
                     ) -> None:
  """Writes a TrainState (with config and normalisation) with `Checkpointer`.

  Orbax finalises the step directory by an atomic rename: it is complete or absent.
  """
  checkpointer = Checkpointer(directory, config, vocab_size, normalization=normalization)
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
  checkpointer = Checkpointer(directory, config, vocab_size)
  try:
    return checkpointer.restore(template)
  finally:
    checkpointer.close()


class FitProgress:
  """The resumable part of a long fit (MotionModel.fit): its checkpoints and the running loss sum.

  `checkpoint_dir`/state holds orbax checkpoints of the train state (the newest only);
  `checkpoint_dir`/fit.json the fit's identity (first step, steps per call, calls) and the
  loss sum and count at the saved step. The record is written before the checkpoint, so the
  newest checkpoint always has its losses.
  """

  def __init__(self, config: ml_collections.ConfigDict, vocab_size: int,
               checkpoint_dir: str | None, first_step: int, per_call: int, calls: int):
    self.directory = checkpoint_dir
    self.identity = {"first_step": int(first_step), "steps_per_call": int(per_call),
                     "calls": int(calls)}
    self.start_call, self.loss_sum, self.loss_count = 0, 0.0, 0
    self._config = config
    self._vocab_size = vocab_size
    self._checkpointer = self._open() if checkpoint_dir else None

  def _open(self):
    return Checkpointer(os.path.join(self.directory, "state"), self._config,
                        self._vocab_size, max_to_keep=1)

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
