"""Physics correction of the motion experiment's samples, and the physics part of its rows.

`correct_motions` takes normalised MDM motions to raw features, has the physics corrector
(selfconsume.physics.corrector) replace each by a simulated humanoid's imitation of it, and
normalises the result again; `physics_summary` gives every evaluation row its float,
penetration, skating and jerk.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selfconsume.humanml.model import MotionModel
from selfconsume.physics import corrector
from selfconsume.physics import metrics as physics_metrics
from selfconsume.physics import params as params_lib

# Per-motion fields of the corrector's info reported (mean and interval) in every
# self_correcting row besides tracking_error_m and fell.
CORRECTION_INFO = ("resets", "imitated_fraction", "realisable")


def corrector_params(config: ml_collections.ConfigDict) -> Any:
  """The physics corrector's settings: CorrectorParams with config.correction.physics."""
  return params_lib.from_config(config.correction.physics.to_dict())


def correct_motions(model: MotionModel, physics: Any, motions: jax.Array, lengths: jax.Array
                    ) -> tuple[jax.Array, jax.Array, Mapping[str, Any]]:
  """Physics-corrects normalised motions (B, frames, 263).

  Returns:
    (corrected normalised motions, usable (B,) bool, the corrector's info dict). Samples
    whose simulation was not finite, and samples the corrector dropped (info 'keep' False:
    the loop leaves them out of its training data), are returned uncorrected and marked not
    usable.
  """
  raw = model.denormalize(motions, lengths)
  fixed_raw, info = corrector.correct(raw, lengths, physics)
  fixed = model.normalize(jnp.asarray(fixed_raw, jnp.float32), lengths)
  usable = ~jnp.asarray(info.get("nonfinite", jnp.zeros(lengths.shape, bool)), bool)
  usable = usable & jnp.asarray(info.get("keep", jnp.ones(lengths.shape, bool)), bool)
  usable = usable & jnp.all(jnp.isfinite(fixed), axis=(1, 2))
  fixed = jnp.where(usable[:, None, None], jnp.nan_to_num(fixed), motions)
  return fixed, usable, info


def mean_and_interval(per_motion: Mapping[str, Any], xp: Any = jnp) -> dict[str, Any]:
  """{name: mean, name_ci95: 1.96 sd / sqrt(B)} of per-motion values, each (B,).

  `xp=jnp` (float32, jit-able: inside a fused generation) or `np` (float64, on the host).
  """
  dtype = np.float64 if xp is np else jnp.float32
  out = {}
  for name, values in per_motion.items():
    values = xp.asarray(values, dtype).reshape(-1)
    out[name] = xp.mean(values)
    out[f"{name}_ci95"] = 1.96 * xp.std(values) / np.sqrt(max(values.size, 1))
  return out


def physics_summary(joints: jax.Array, lengths: jax.Array,
                    valid: np.ndarray | None = None) -> dict[str, float]:
  """Mean and 95% interval over motions of float_mm, penetrate_mm, skate and jerk.

  Args:
    joints: (B, frames, 22, 3) joint positions in metres.
    lengths: (B,) valid frames.
    valid: optional (B,) bool, the motions to average over (default all; the shapes stay
      fixed so the metrics compile once).
  """
  per_motion = jax.device_get(physics_metrics.physics_metrics(joints, lengths))
  if valid is not None:
    keep = np.asarray(valid, bool)
    per_motion = {name: np.asarray(values)[keep] for name, values in per_motion.items()}
  summary = mean_and_interval(per_motion, np)
  return {name: float(value) for name, value in summary.items()}
