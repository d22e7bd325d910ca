r"""Can the motion evaluator see physics? Real test motions against themselves with flaws added.

  python -m benchmarks.humanml_visibility                  # the default preset's corpus
  python -m benchmarks.humanml_visibility --workdir=runs/humanml_seeds_11 \
      --corpus_dir=runs/humanml_seeds_11/corpus

The loop's FID compares samples with the real test motions in the evaluator's embedding
space. Physics correction changes samples by millimetres of float and penetration and a few
percent of foot skating; whether FID can register changes of that kind at all is a property
of the evaluator, measured here where nothing else differs: the test split's motions (joints
recovered from their features), each given one physical flaw of a known size, turned back into
features, embedded, and scored against the unflawed test motions.

  round_trip  no flaw (features -> joints -> features): the measurement's own floor.
  bob         the whole body moves up and down, size * sin(2 pi t / 2 s). The features put a
              motion's lowest frame on the floor, so this reads as float (up to 2 * size).
  drift       the whole body slides horizontally at `size` m/s: planted feet skate.
  jitter      independent noise of sd `size` m on every joint and frame: jerk.
  corrected   the physics corrector's imitation of each test motion, as the loop corrects its
              samples (config.correction.physics): what correction does to motions that need
              none.

Each row: the flawed set's physical metrics and FID to the unflawed test motions, and
`fid_over_round_trip` = FID(flawed) - FID(round_trip) with a paired bootstrap 95% interval
(the same resample of motions on both sides). `real_same_size` is the FID of random training
subsets of the test split's size: how far apart two sets of real motions already are, the
scale a flaw's FID is to be read against. Writes WORKDIR/visibility.json; the last line
printed is that JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import humanml_seeds
from selfconsume import outputs
from selfconsume.humanml import correction
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import evaluator_record
from selfconsume.humanml import model as model_lib
from selfconsume.metrics import fid as fid_lib
from selfconsume.motion import features as features_lib
from selfconsume.motion import skeleton

# Flaw sizes: bob and jitter in metres, drift in m/s.
FLAWS = {"bob": (0.01, 0.02, 0.05), "drift": (0.1, 0.2, 0.4), "jitter": (0.005, 0.01, 0.02)}
BOB_PERIOD_S = 2.0


def add_flaw(joints: np.ndarray, lengths: np.ndarray, flaw: str, size: float,
             rng: np.random.Generator) -> np.ndarray:
  """joints (B, frames, 22, 3) (metres, Y up) with one physical flaw of `size` added on each
  motion's valid frames (lengths (B,)); frames beyond a length are left as they are."""
  joints = np.array(joints, np.float64)
  t = np.arange(joints.shape[1]) / skeleton.FPS                        # (frames,)
  valid = (np.arange(joints.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None, None]
  offset = np.zeros_like(joints)
  if flaw == "bob":
    offset[..., 1] = size * np.sin(2 * np.pi * t / BOB_PERIOD_S)[None, :, None]
  elif flaw == "drift":
    offset[..., 0] = size * t[None, :, None]
  elif flaw == "jitter":
    offset = rng.normal(0.0, size, joints.shape)
  else:
    raise ValueError(f"flaw must be one of {tuple(FLAWS)}, got {flaw!r}")
  return joints + np.where(valid, offset, 0.0)


def fid_difference(flawed: np.ndarray, plain: np.ndarray, real: np.ndarray,
                   rng: np.random.Generator, draws: int = 200) -> tuple[float, float, float]:
  """(FID(flawed), FID(flawed) - FID(plain), 95% interval of that difference) against `real`;
  flawed and plain are (num, dim) embeddings of the same motions, resampled together."""
  stats = fid_lib.gaussian_statistics(real)
  fid = lambda x: fid_lib.frechet_distance(*fid_lib.gaussian_statistics(x), *stats)
  gaps = []
  for _ in range(draws):
    pick = rng.integers(len(flawed), size=len(flawed))
    gaps.append(fid(flawed[pick]) - fid(plain[pick]))
  return fid(flawed), fid(flawed) - fid(plain), float(1.96 * np.std(gaps))


def visibility(config, workdir: str) -> dict[str, Any]:
  """The rows of the module docstring for the config's corpus and evaluator."""
  data = data_lib.load_data(config, workdir)
  model = model_lib.MotionModel(config, data.vocab, data.train.mean, data.train.std)
  evaluator = evaluator_record.load_or_train(
      workdir, data.train, config.eval.evaluator, config.eval.evaluator_cache or None)
  motions = jnp.asarray(data.test.motions)
  lengths = jnp.asarray(data.test.lengths, jnp.int32)
  test = evaluator.embed_motions(data.test.motions, data.test.lengths)
  rng = np.random.default_rng(int(config.seed))
  # n feature rows come from n + 1 joint frames (as the corrector recovers them).
  joints = np.asarray(features_lib.features_to_joints(
      model.denormalize(motions, lengths), lengths, with_last_frame=True))
  frames = np.asarray(lengths) + 1

  def score(flawed_motions: jax.Array) -> tuple[np.ndarray, dict[str, float]]:
    summary = correction.physics_summary(model.joints(flawed_motions, lengths), lengths)
    embedded = evaluator.embed_motions(np.asarray(flawed_motions), np.asarray(lengths))
    return embedded, {k: summary[k] for k in ("float_mm", "penetrate_mm", "skate", "jerk")}

  def from_joints(flawed_joints: np.ndarray) -> jax.Array:
    raw = features_lib.batch_joints_to_features(jnp.asarray(flawed_joints, jnp.float32),
                                                jnp.asarray(frames, jnp.int32))
    return model.normalize(raw, lengths)

  plain, plain_physics = score(from_joints(joints))
  # The test motions' own physics (as loaded, no round trip): what the flaws are added to.
  rows: dict[str, Any] = {"test_motions": score(motions)[1]}
  rows["round_trip"] = dict(plain_physics, **dict(zip(
      ("fid", "fid_over_round_trip", "fid_over_round_trip_ci95"),
      fid_difference(plain, plain, test, rng))))
  print("round_trip", json.dumps(rows["round_trip"]), flush=True)
  for flaw, sizes in FLAWS.items():
    for size in sizes:
      embedded, physics = score(from_joints(add_flaw(joints, frames, flaw, size, rng)))
      fid, gap, ci = fid_difference(embedded, plain, test, rng)
      rows[f"{flaw}_{size:g}"] = dict(physics, fid=fid, fid_over_round_trip=gap,
                                      fid_over_round_trip_ci95=ci, flaw=flaw, size=size)
      print(f"{flaw}_{size:g}", json.dumps(rows[f"{flaw}_{size:g}"]), flush=True)
  rows["corrected"] = _corrected_row(config, model, motions, lengths, plain, test, score, rng)
  print("corrected", json.dumps(rows["corrected"]), flush=True)
  train = evaluator.embed_motions(data.train.motions, data.train.lengths)
  size = len(test)
  stats = fid_lib.gaussian_statistics(test)
  rows["real_same_size"] = {"fid": float(np.mean([fid_lib.frechet_distance(
      *fid_lib.gaussian_statistics(train[rng.choice(len(train), size, replace=False)]), *stats)
      for _ in range(50)])), "motions": size}
  return {"test_motions": size, "rows": rows}


def _corrected_row(config, model, motions, lengths, plain, test, score, rng) -> dict[str, Any]:
  """The corrector on the test motions, in batches of config.loop.sample_batch_size (the
  last one padded by repetition, so the rollout compiles once)."""
  physics = correction.corrector_params(config)
  batch = int(config.loop.sample_batch_size)
  num = motions.shape[0]
  order = np.arange(-(-num // batch) * batch) % num
  fixed, usable = [], []
  for start in range(0, len(order), batch):
    pick = order[start:start + batch]
    out, ok, _ = correction.correct_motions(model, physics, motions[pick], lengths[pick])
    fixed.append(np.asarray(out))
    usable.append(np.asarray(ok))
  fixed_motions = jnp.asarray(np.concatenate(fixed)[:num])
  kept = np.concatenate(usable)[:num]
  embedded, physics_row = score(fixed_motions)
  fid, gap, ci = fid_difference(embedded, plain, test, rng)
  # Motions the corrector did not keep come back as they were (they are in the FID as such).
  return dict(physics_row, fid=fid, fid_over_round_trip=gap, fid_over_round_trip_ci95=ci,
              kept_fraction=float(kept.mean()))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/humanml_visibility",
                      help="where the corpus (unless --corpus_dir) and the evaluator's copy go")
  parser.add_argument("--preset", default="")
  parser.add_argument("--seed", type=int, default=0, help="draws the jitter and the bootstrap")
  parser.add_argument("--corpus_dir", default="", help="config.data.corpus_dir")
  parser.add_argument("--override", action="append", default=[],
                      help="config assignment section.field=value")
  args = parser.parse_args(argv)
  config = humanml_seeds.motion_config(args.preset, args.seed, args.corpus_dir, args.override)
  os.makedirs(args.workdir, exist_ok=True)
  result = dict(benchmark="humanml_visibility", preset=args.preset or "default",
                seed=args.seed, overrides=list(args.override),
                **visibility(config, args.workdir))
  outputs.write_json(os.path.join(args.workdir, "visibility.json"), result)
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
