r"""Two questions about a finished motion run, answered from its checkpoints.

  python -m benchmarks.humanml_diagnostics --workdir=runs/humanml_seeds/seed_0 --seed=0 \
      --corpus_dir=runs/humanml_seeds/corpus

The config must be the run's: --preset, --seed, --corpus_dir and any --override it ran with.

1. What does correction do to the loop's data? For generation 0 and the last generation of
   every variant, `--count` motions sampled as the loop samples them (its prompts and
   sampler; at most as many as the n real motions have captions) are
   scored by the physical metrics (float, penetrate, skate, jerk) and by `velocity_jumps`
   before and after physics correction; the real training motions are scored for reference.
   `toward_data`: does correction bring those samples nearer the data in the evaluator's
   space (the paper's premise: the corrector maps a sample toward the true distribution)?
   FID to the real test motions of the kept samples before and after correction, paired
   (the correction's gap), and of the kept samples against random subsets of the samples of
   the same size (what keeping only the realisable ones selects); see `toward_data`.
   `joint_speed_m_s`: how much the samples move (mean joint speed), kept and dropped.
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

from benchmarks import humanml_seeds
from selfconsume import outputs
from selfconsume import sweep
from selfconsume.humanml import correction
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import evaluator_record
from selfconsume.humanml import generation
from selfconsume.humanml import model as model_lib
from selfconsume.metrics import fid as fid_lib
from selfconsume.motion import features as features_lib
from selfconsume.motion import skeleton

PHYSICAL = ("float_mm", "penetrate_mm", "skate", "jerk")


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


def joint_speed(joints: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Mean speed of all joints over each motion's valid frames, m/s: joints (B, frames, J, 3),
  lengths (B,) -> (B,). How much a motion moves: a still body scores 0."""
  joints, lengths = np.asarray(joints, np.float64), np.asarray(lengths)
  step = np.linalg.norm(np.diff(joints, axis=1), axis=-1).mean(axis=-1)   # (B, frames - 1)
  valid = np.arange(step.shape[1])[None, :] < (lengths[:, None] - 1)
  return (step * valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1) * skeleton.FPS


def toward_data(sampled: np.ndarray, corrected: np.ndarray, kept: np.ndarray,
                real: np.ndarray, rng: np.random.Generator, *, draws: int = 200,
                reference: np.ndarray | None = None) -> dict[str, float]:
  """Whether correction moves samples toward the data, in an evaluator's embedding space.

  Args:
    sampled, corrected: (count, dim) embeddings of the same motions before and after
      correction.
    kept: bool (count,), the motions the loop trains on (the corrector's keep).
    real: (num, dim) embeddings of the real motions FID is measured against.
    rng: draws the bootstrap and the random subsets.
    draws: bootstrap resamples and random subsets.
    reference: optional (num_ref, dim) embeddings of other real motions (the training
      split): FID of random subsets of the kept set's size is the finite-sample floor.

  Returns:
    fid_sampled (every sample), fid_sampled_kept, fid_corrected_kept, and:
    correction_gap = FID(kept, corrected) - FID(kept, sampled), with correction_gap_ci95
      (bootstrap over the kept motions, the same resample for both sides): what the
      simulation itself does to the set the loop trains on;
    fid_sampled_random = mean FID of `draws` random subsets of the samples of the kept set's
      size (the same finite-sample bias, no selection); selection_gap = fid_sampled_kept -
      fid_sampled_random, and selection_p = the share of those subsets at or below the kept
      set's FID (small: the kept samples are nearer the data than chance picks);
    fid_real_same_size (with `reference`). Negative gaps move toward the data. FID of a few
    dozen motions is biased upward; compare only numbers of the same size.
  """
  sampled, corrected = np.asarray(sampled, np.float64), np.asarray(corrected, np.float64)
  kept = np.asarray(kept, bool)
  real_stats = fid_lib.gaussian_statistics(real)
  fid = lambda x: fid_lib.frechet_distance(*fid_lib.gaussian_statistics(x), *real_stats)
  count, size = len(sampled), int(kept.sum())
  out = {"count": float(count), "kept": float(size), "fid_sampled": fid(sampled)}
  if size < 2:
    return out
  before, after = sampled[kept], corrected[kept]
  out.update(fid_sampled_kept=fid(before), fid_corrected_kept=fid(after))
  out["correction_gap"] = out["fid_corrected_kept"] - out["fid_sampled_kept"]
  gaps = []
  for _ in range(draws):
    pick = rng.integers(size, size=size)
    gaps.append(fid(after[pick]) - fid(before[pick]))
  out["correction_gap_ci95"] = float(1.96 * np.std(gaps))
  if size < count:
    random_fids = np.array([fid(sampled[rng.choice(count, size, replace=False)])
                            for _ in range(draws)])
    out["fid_sampled_random"] = float(random_fids.mean())
    out["selection_gap"] = out["fid_sampled_kept"] - out["fid_sampled_random"]
    out["selection_p"] = float(np.mean(random_fids <= out["fid_sampled_kept"]))
  if reference is not None and len(reference) >= size:
    out["fid_real_same_size"] = float(np.mean(
        [fid(np.asarray(reference)[rng.choice(len(reference), size, replace=False)])
         for _ in range(draws)]))
  return out


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

  def speed(motions: jax.Array, lengths: jax.Array) -> np.ndarray:
    return joint_speed(np.asarray(model.joints(motions, lengths)), np.asarray(lengths))

  real = components.real_buffer(n)
  out: dict[str, Any] = {"real_training_motions": dict(
      physics(real.data["motion"], real.data["lengths"]),
      joint_speed_m_s=float(speed(real.data["motion"], real.data["lengths"]).mean()))}
  # No more samples than the n real motions have distinct captions (the loop's prompts are
  # drawn without replacement).
  pairs = data_lib.num_prompts(real)
  if count > pairs:
    print(f"--count={count}: the {n} real motions have {pairs} captions; sampling {pairs}",
          flush=True)
    count = pairs
  # The run's own evaluator (build_components copied it into the workdir).
  evaluator = evaluator_record.load_or_train(
      workdir, data.train, config.eval.evaluator, config.eval.evaluator_cache or None)
  test_embeddings = evaluator.embed_motions(data.test.motions, data.test.lengths)
  train_embeddings = evaluator.embed_motions(data.train.motions, data.train.lengths)
  rng = np.random.default_rng(int(config.seed))
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
    lengths = np.asarray(sampled.data["lengths"])
    # Which samples the corrector keeps: how much they move, as sampled.
    kept, speeds = np.asarray(corrected.valid), speed(sampled.data["motion"], lengths)
    moves = {"all": float(speeds.mean())}
    moves.update({part: float(speeds[mask].mean())
                  for part, mask in (("kept", kept), ("dropped", ~kept)) if mask.any()})
    out[name] = {"sampled": physics(sampled.data["motion"], sampled.data["lengths"]),
                 "corrected": physics(corrected.data["motion"], corrected.data["lengths"]),
                 "toward_data": toward_data(
                     evaluator.embed_motions(np.asarray(sampled.data["motion"]), lengths),
                     evaluator.embed_motions(np.asarray(corrected.data["motion"]), lengths),
                     kept, test_embeddings, rng, reference=train_embeddings),
                 "joint_speed_m_s": moves,
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
  parser.add_argument("--generation1", action=argparse.BooleanOptionalAction, default=True,
                      help="question 2 (--no-generation1 skips its two fits)")
  args = parser.parse_args(argv)
  config = humanml_seeds.motion_config(args.preset, args.seed, args.corpus_dir, args.override)
  result = {"benchmark": "humanml_diagnostics", "workdir": args.workdir, "seed": args.seed,
            "overrides": list(args.override),
            "correction_effect": correction_effect(config, args.workdir, args.count)}
  if args.generation1:
    result["generation1_optimizer"] = optimizer_at_generation1(config, args.workdir)
  outputs.write_json(os.path.join(args.workdir, "diagnostics.json"), result)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
