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

The whole refined rollout is one jit-compiled program, vmapped over the batch: a `lax.scan`
over the windows whose body optimises one window and advances the state through it. It
compiles once per batch and motion shape (the body once, whatever the number of windows),
and inside a jitted caller (the fused generation) it is part of the caller's program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

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


class _Window(NamedTuple):
  """One window's inputs, (window, ...) per frame; next_*: the frame after the window."""
  frame: rollout_lib.Frames
  reference: jax.Array       # (window, 22, 3)
  valid: jax.Array           # (window,)
  next_reference: jax.Array  # (22, 3)
  next_valid: jax.Array      # ()


def _windows(frames: rollout_lib.Frames, reference: jax.Array, valid: jax.Array, window: int
             ) -> _Window:
  """A motion's (F, ...) inputs as (windows, window, ...), each window with the frame that
  follows it (the last window's: its own last frame, not valid)."""
  valid = jnp.concatenate([valid, jnp.zeros((-valid.shape[0]) % window, bool)])
  reference_w = _split_windows(reference, window)
  valid_w = _split_windows(valid, window)
  return _Window(
      frame=jax.tree.map(lambda x: _split_windows(x, window), frames),
      reference=reference_w, valid=valid_w,
      next_reference=jnp.concatenate([reference_w[1:, 0], reference_w[-1:, -1]]),
      next_valid=jnp.concatenate([valid_w[1:, 0], jnp.zeros((1,), bool)]))


def _refined_one(static: CorrectorParams, system, control: rollout_lib.Control,
                 targets: rollout_lib.Targets, reference: jax.Array, valid: jax.Array
                 ) -> rollout_lib.Rollout:
  """The refined rollout of one motion: Targets (F, ...), reference (F, 22, 3), valid (F,)."""
  index = humanoid.model_index(static.spec)
  optimizer = optax.adam(static.refine_learning_rate)
  real = rollout_lib.controlled_system(system, control, index)
  # One solver iteration: the solver has no while_loop, so reverse mode works.
  differentiable = real.replace(opt=real.opt.replace(iterations=1))

  def error(model, data, w: _Window, offsets, recompute):
    end, out = rollout_lib.run_frames(model, static, control, data, w.frame, offsets,
                                      recompute_substeps=recompute)
    err = _window_error(out.joints, rollout_lib.state_joints(end, index), w.reference,
                        w.next_reference, w.valid, w.next_valid)
    return err, (end, out)

  def optimize(data, w: _Window):
    def loss(offsets):
      err, _ = error(differentiable, data, w, offsets, recompute=True)
      return err + OFFSET_PENALTY * jnp.mean(jnp.sum(offsets * offsets, axis=-1))

    def adam_step(carry, _):
      offsets, opt_state = carry
      grads = jnp.nan_to_num(jax.grad(loss)(offsets), nan=0.0, posinf=0.0, neginf=0.0)
      updates, opt_state = optimizer.update(grads, opt_state, offsets)
      return (optax.apply_updates(offsets, updates), opt_state), None

    zeros = jnp.zeros(w.frame.local_target.shape[:-1] + (3,), jnp.float32)
    start = rollout_lib.varying_with((zeros, optimizer.init(zeros)), w.reference)
    (offsets, _), _ = jax.lax.scan(adam_step, start, None,
                                   length=static.refine_iterations)
    return offsets

  def advance(data, w: _Window, offsets):
    # Plain and refined windows as one batched simulation rather than two independent ones
    # (with a LAPACK-using solver, two independent simulations could run two batched
    # factorisations at once, which deadlocks XLA:CPU's pool: see params).
    candidates = jnp.stack([jnp.zeros_like(offsets), offsets])
    errors, (ends, outs) = jax.vmap(
        lambda o: error(real, data, w, o, recompute=False))(candidates)
    # Both candidates run with the fail-safe: the refined window wins with fewer resets, or
    # as many and a lower error (a reset lowers the error by putting the body back on the
    # reference, so error alone would favour failing). False when it is not finite.
    resets = jnp.sum(outs.reset & w.valid, axis=1)
    better = (resets[1] < resets[0]) | ((resets[1] == resets[0]) & (errors[1] < errors[0]))
    return jax.tree.map(lambda x: jnp.where(better, x[1], x[0]), (ends, outs))

  def window_step(data, w: _Window):
    return advance(data, w, optimize(data, w))

  frames = rollout_lib.prepare(targets, None, static.frame_dt)
  # Batched from the start under vmap, so that the scans carrying it trace once (see there).
  data = rollout_lib.varying_with(rollout_lib.initial_data(real, index, frames), reference)
  _, outs = jax.lax.scan(window_step, data,
                         _windows(frames, reference, valid, static.refine_window))
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:reference.shape[0]], outs)


@functools.lru_cache(maxsize=8)
def _compiled(static: CorrectorParams):
  system = humanoid.brax_system(static.spec)
  one = functools.partial(_refined_one, static, system)
  return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)))


def make_refined_rollout(params: CorrectorParams):
  """A batched rollout with gradient refinement:
  (Targets (B, F, ...), reference (B, F, 22, 3), valid (B, F)) -> Rollout (B, F, ...).

  Compiled once per static settings (including the refinement's window, steps and rate)
  and batch shape; gains and bounds are runtime inputs.
  """
  control = rollout_lib.make_control(params)
  compiled = _compiled(dataclasses.replace(
      rollout_lib.static_part(params), refine_window=params.refine_window,
      refine_iterations=params.refine_iterations,
      refine_learning_rate=params.refine_learning_rate))
  return lambda targets, reference, valid: compiled(control, targets, reference, valid)
