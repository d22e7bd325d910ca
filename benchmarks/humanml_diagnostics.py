r"""Two questions about a finished motion run, answered from its checkpoints.

  python -m benchmarks.humanml_diagnostics --workdir=runs/humanml_seeds/seed_0 --seed=0 \
      --corpus_dir=runs/humanml_seeds/corpus

The config must be the run's: --preset, --seed, --corpus_dir and any --override it ran with.

1. What does correction do to the loop's data? For generation 0 and the last generation of
   every variant, 64 motions sampled as the loop samples them (its prompts and sampler) are
   scored by the physical metrics (float, penetrate, skate, jerk) and by `velocity_jumps`
   before and after physics correction; the real training motions are scored for reference.
2. Is baseline's change at generation 1 the fresh optimizer's? Generation 0 is fine-tuned on
   the real motions for `train.generation_steps` steps with the loop's generation-1 key, once
   with a fresh AdamW (what the loop does: it reproduces baseline's generation-1 row) and once
   with the AdamW moments carried over, and both are evaluated like a generation.

Writes WORKDIR/diagnostics.json and prints it as one JSON line last. Needs the run's
checkpoints of generation 0 and of the last generation (`outputs.keep_checkpoints` >= 1).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import jax
import numpy as np

from benchmarks.humanml_seeds import apply_override
from experiments.configs import humanml as humanml_config
from selfconsume import outputs
from selfconsume import sweep
from selfconsume.humanml import correction
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import generation
from selfconsume.humanml import model as model_lib
from selfconsume.motion import features as features_lib

PHYSICAL = ("float_mm", "penetrate_mm", "skate", "jerk")


def _config(args) -> Any:
  config = humanml_config.get_config(args.preset)
  config.seed = args.seed
  if args.corpus_dir:
    config.data.corpus_dir = args.corpus_dir
  for assignment in args.override:
    apply_override(config, assignment)
  return config


def velocity_jumps(raw: np.ndarray, lengths: np.ndarray, std: np.ndarray) -> float:
  """Mean absolute second difference over frames of the joint-velocity features (raw
  (B, frames, 263), each in units of its std over the training motions), over valid frames
  and motions. A fail-safe reset teleports the body onto the reference: one frame of
  velocity far from its neighbours, which this shows and the physical metrics average away.
  """
  block = features_lib.LOCAL_VEL
  scale = np.maximum(np.asarray(std, np.float64)[block], 1e-8)
  values = []
  for motion, length in zip(np.asarray(raw, np.float64), np.asarray(lengths)):
    velocities = motion[:int(length), block] / scale
    if len(velocities) >= 3:
      values.append(np.abs(np.diff(velocities, 2, axis=0)).mean())
  return float(np.mean(values)) if values else float("nan")


def correction_effect(config, workdir: str, count: int) -> dict[str, Any]:
  """Physical metrics of loop samples before and after correction, per checkpoint."""
  data = data_lib.load_data(config, workdir)
  model = model_lib.MotionModel(config, data.vocab, data.train.mean, data.train.std)
  components = generation.build_components(config, workdir)
  n, ratio = int(config.loop.sizes[0]), float(config.loop.lambdas[-1])
  last = int(config.loop.generations)

  def physics(motions: jax.Array, lengths: jax.Array) -> dict[str, float]:
    summary = correction.physics_summary(model.joints(motions, lengths), lengths)
    raw = np.asarray(model.denormalize(motions, lengths))
    return dict({k: float(summary[k]) for k in PHYSICAL},
                velocity_jumps=velocity_jumps(raw, np.asarray(lengths), data.train.std))

  real = components.real_buffer(n)
  out: dict[str, Any] = {"real_training_motions": physics(real.data["motion"],
                                                          real.data["lengths"])}
  checkpoints = {"generation0": sweep.generation_dir(sweep.run_dir(workdir, n, None, None), 0)}
  for variant in config.loop.variants:
    run = sweep.run_dir(workdir, n, 0.0 if variant == "baseline" else ratio, variant)
    checkpoints[f"{variant}_gen{last}"] = sweep.generation_dir(run, last)
  template = components.init(jax.random.PRNGKey(0))
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0xD1A6)
  for name, directory in checkpoints.items():
    state = components.restore(os.path.join(directory, "state"), template)
    sampled = components.sample(state, components.synthetic_buffer(n, count / n), key, n, ratio)
    corrected, metrics = components.correct(key, sampled)
    out[name] = {"sampled": physics(sampled.data["motion"], sampled.data["lengths"]),
                 "corrected": physics(corrected.data["motion"], corrected.data["lengths"]),
                 "tracking_error_m": float(metrics["tracking_error_m"]),
                 "resets": float(metrics["resets"]),
                 "corrected_fraction": float(metrics["corrected_fraction"])}
    print(name, json.dumps(out[name]), flush=True)
  return out


def optimizer_at_generation1(config, workdir: str) -> dict[str, Any]:
  """Baseline's generation 1 with a fresh and with a carried-over AdamW."""
  n = int(config.loop.sizes[0])
  steps = int(config.train.generation_steps[0])
  # The loop's key of baseline's generation 1, split as loop.run_generation splits it.
  fit_key = jax.random.split(sweep.generation_key(int(config.seed), n, 0.0, "baseline", 1), 4)[3]
  gen0 = os.path.join(sweep.generation_dir(sweep.run_dir(workdir, n, None, None), 0), "state")
  out = {}
  for fresh in (True, False):
    run_config = config.copy_and_resolve_references()
    run_config.train.fresh_optimizer = fresh
    components = generation.build_components(run_config, workdir)
    state = components.restore(gen0, components.init(jax.random.PRNGKey(0)))
    state, _ = components.fit(state, components.real_buffer(n), fit_key, steps)
    row = components.evaluate(state, sweep.evaluation_key(int(config.seed)))
    out["fresh_adamw" if fresh else "carried_adamw"] = {
        "fid": float(row["fid"]), "fid_ci95": float(row.get("fid_ci95", float("nan"))),
        "diversity": float(row["diversity"]), "r_precision_top3": float(row["r_precision"][2])}
    print(json.dumps(out), flush=True)
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a finished run of the motion config")
  parser.add_argument("--preset", default="")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--corpus_dir", default="", help="the run's corpus (config.data.corpus_dir)")
  parser.add_argument("--count", type=int, default=64, help="loop samples per checkpoint")
  parser.add_argument("--override", action="append", default=[],
                      help="config assignment section.field=value, as the run had it")
  args = parser.parse_args(argv)
  config = _config(args)
  result = {"benchmark": "humanml_diagnostics", "workdir": args.workdir, "seed": args.seed,
            "correction_effect": correction_effect(config, args.workdir, args.count),
            "generation1_optimizer": optimizer_at_generation1(config, args.workdir)}
  outputs.write_json(os.path.join(args.workdir, "diagnostics.json"), result)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
