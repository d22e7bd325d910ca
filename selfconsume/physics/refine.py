"""Gradient refinement: per-frame PD-target offsets optimised through the simulation.

The motion is cut into truncated windows of `refine_window` frames, simulated in order. For
each window, starting from the state the previous window ended in, a few Adam steps (optax)
lower the squared joint-position error of the simulated window against the reference, by
gradients of the whole window's simulation (10 substeps per frame, contacts included) with
respect to offsets added to that window's PD targets. Short windows keep the gradients of
contact dynamics stable and the memory of reverse mode small.

MuJoCo XLA's constraint solver is a `while_loop` (not reverse-differentiable) unless it runs
a single iteration, so gradients are taken on the same model with one solver iteration; the
window is then re-simulated on the real model with the optimised offsets and with none (one
batched simulation of both), and whichever tracks better (fewer fail-safe resets, then lower
error) is kept and carried on, so refinement never makes a window worse.

Three jit-compiled programs, each vmapped over the batch (start; optimise one window; advance
one window), are called window by window from Python, so they compile once per batch shape
whatever the motion length.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from selfconsume.physics import humanoid
from selfconsume.physics import rollout as rollout_lib
from selfconsume.physics.params import CorrectorParams

OFFSET_PENALTY = 1e-3  # per rad^2 of offset, against offsets the error does not need


def _window_error(joints: jax.Array, end_joints: jax.Array, reference: jax.Array,
                  next_reference: jax.Array, valid: jax.Array, next_valid: jax.Array
                  ) -> jax.Array:
  """Mean squared joint distance (m^2) over a window's valid frames.

  joints (W, 22, 3) are recorded at each frame's start, so the first one does not depend on
  the window's offsets; the state after the window (end_joints) is scored against the next
  frame's reference instead.
  """
  per_frame = jnp.sum((joints[1:] - reference[1:]) ** 2, axis=-1).mean(axis=-1)
  end = jnp.sum((end_joints - next_reference) ** 2, axis=-1).mean()
  total = jnp.sum(jnp.where(valid[1:], per_frame, 0.0)) + jnp.where(next_valid, end, 0.0)
  count = jnp.sum(valid[1:]) + next_valid
  return total / jnp.maximum(count, 1)


def _split_windows(x: jax.Array, window: int) -> jax.Array:
  """(F, ...) -> (windows, window, ...), the last window padded by repeating the last frame."""
  windows = -(-x.shape[0] // window)
  pad = windows * window - x.shape[0]
  if pad:
    x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
  return x.reshape((windows, window) + x.shape[1:])


class _Steps:
  """The three compiled pieces of a refined rollout (each vmapped over the batch)."""

  def __init__(self, static: CorrectorParams):
    self.params = static
    self.system = humanoid.brax_system(static.spec)
    self.index = humanoid.model_index(static.spec)
    self.optimizer = optax.adam(static.refine_learning_rate)
    self.start = jax.jit(jax.vmap(self._start, in_axes=(None, 0)))
    self.optimize = jax.jit(jax.vmap(self._optimize, in_axes=(None, 0, 0, 0, 0, 0, 0)))
    self.advance = jax.jit(jax.vmap(self._advance, in_axes=(None, 0, 0, 0, 0, 0, 0, 0)))

  def _systems(self, control):
    real = rollout_lib.controlled_system(self.system, control, self.index)
    # One solver iteration: the solver has no while_loop, so reverse mode works.
    return real, real.replace(opt=real.opt.replace(iterations=1))

  def _start(self, control, targets):
    real, _ = self._systems(control)
    frames = rollout_lib.prepare(targets, None, self.params.frame_dt)
    return rollout_lib.initial_data(real, self.index, frames), frames

  def _error(self, model, control, data, frame, offsets, ref, val, ref_next, val_next):
    end, out = rollout_lib.run_frames(model, self.params, control, data, frame, offsets)
    err = _window_error(out.joints, rollout_lib.state_joints(end, self.index), ref, ref_next,
                        val, val_next)
    return err, (end, out)

  def _optimize(self, control, data, frame, ref, val, ref_next, val_next):
    _, differentiable = self._systems(control)

    def loss(offsets):
      err, _ = self._error(differentiable, control, data, frame, offsets, ref, val, ref_next,
                           val_next)
      return err + OFFSET_PENALTY * jnp.mean(jnp.sum(offsets * offsets, axis=-1))

    def adam_step(carry, _):
      offsets, opt_state = carry
      grads = jnp.nan_to_num(jax.grad(loss)(offsets), nan=0.0, posinf=0.0, neginf=0.0)
      updates, opt_state = self.optimizer.update(grads, opt_state, offsets)
      return (optax.apply_updates(offsets, updates), opt_state), None

    zeros = jnp.zeros(frame.local_target.shape[:-1] + (3,), jnp.float32)
    (offsets, _), _ = jax.lax.scan(adam_step, (zeros, self.optimizer.init(zeros)), None,
                                   length=self.params.refine_iterations)
    return offsets

  def _advance(self, control, data, frame, ref, val, ref_next, val_next, offsets):
    real, _ = self._systems(control)
    # Plain and refined windows as one batched simulation rather than two independent ones
    # (half the programs; and with a LAPACK-using solver, two independent simulations could
    # run two batched factorisations at once, which deadlocks XLA:CPU's pool: see params).
    candidates = jnp.stack([jnp.zeros_like(offsets), offsets])
    errors, (ends, outs) = jax.vmap(
        lambda o: self._error(real, control, data, frame, o, ref, val, ref_next, val_next)
    )(candidates)
    # Both candidates run with the fail-safe: the refined window wins with fewer resets, or
    # as many and a lower error (a reset lowers the error by putting the body back on the
    # reference, so error alone would favour failing). False when it is not finite.
    resets = jnp.sum(outs.reset & val, axis=1)
    better = (resets[1] < resets[0]) | ((resets[1] == resets[0]) & (errors[1] < errors[0]))
    return jax.tree.map(lambda x: jnp.where(better, x[1], x[0]), (ends, outs))


@functools.lru_cache(maxsize=8)
def _steps(static: CorrectorParams) -> _Steps:
  return _Steps(static)


def make_refined_rollout(params: CorrectorParams):
  """A batched rollout with gradient refinement:
  (Targets (B, F, ...), reference (B, F, 22, 3), valid (B, F)) -> Rollout (B, F, ...).

  Compiled once per static settings (including the refinement's window, steps and rate)
  and batch shape; gains and bounds are runtime inputs.
  """
  control = rollout_lib.make_control(params)
  steps = _steps(dataclasses.replace(
      rollout_lib.static_part(params), refine_window=params.refine_window,
      refine_iterations=params.refine_iterations,
      refine_learning_rate=params.refine_learning_rate))
  window = params.refine_window

  def run(targets, reference, valid):
    frames_count = reference.shape[1]
    data, frames = steps.start(control, targets)
    split = jax.vmap(lambda x: _split_windows(x, window))
    frames_w = jax.tree.map(split, frames)
    reference_w = split(reference)
    valid_w = split(jnp.concatenate(
        [valid, jnp.zeros((valid.shape[0], (-frames_count) % window), bool)], axis=1))
    outs = []
    for w in range(reference_w.shape[1]):
      frame = jax.tree.map(lambda x, w=w: x[:, w], frames_w)
      last = w + 1 == reference_w.shape[1]
      ref_next = reference_w[:, w, -1] if last else reference_w[:, w + 1, 0]
      val_next = jnp.zeros_like(valid_w[:, w, 0]) if last else valid_w[:, w + 1, 0]
      args = (reference_w[:, w], valid_w[:, w], ref_next, val_next)
      offsets = steps.optimize(control, data, frame, *args)
      data, out = steps.advance(control, data, frame, *args, offsets)
      outs.append(out)
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1)[:, :frames_count], *outs)

  return run
