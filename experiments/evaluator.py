"""Trains (or finds in the cache) the text-motion evaluator and reports its sanity checks.

Run through experiments/run.py with experiments/configs/evaluator.py. Writes
<workdir>/evaluator_report.json and TensorBoard scalars of the training under <workdir>/tb.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections

from selfconsume import outputs
from selfconsume.data import humanml3d
from selfconsume.data import procedural
from selfconsume.humanml import evaluation
from selfconsume.humanml import evaluator as evaluator_lib


def procedural_families(dataset) -> list[tuple[str, ...]] | None:
  """The action families of each motion of a procedural-corpus split (None for other data)."""
  by_id = procedural.motion_families(dataset.root)
  if by_id is None or any(motion_id not in by_id for motion_id in dataset.ids):
    return None
  return [by_id[motion_id] for motion_id in dataset.ids]


def resolve_data_root(data: ml_collections.ConfigDict) -> str:
  """config.data.root, or the procedural corpus built (once) for corpus_size / corpus_seed."""
  if data.root:
    return data.root
  corpus_dir = data.corpus_dir or os.path.join(
      os.path.expanduser("~"), ".cache", "selfconsume", "corpus",
      f"size{data.corpus_size}-seed{data.corpus_seed}")
  return procedural.ensure_corpus(corpus_dir, data.corpus_size, data.corpus_seed)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  root = resolve_data_root(config.data)
  load = lambda split: humanml3d.load(root, split, min_frames=config.data.min_frames,
                                      max_frames=config.data.max_frames)
  train, test = load(config.data.split), load(config.data.test_split)
  cache_dir = config.cache_dir or evaluator_lib.default_cache_dir()
  key = evaluator_lib.cache_key(train.fingerprint(),
                                evaluator_lib.resolve_config(config.evaluator))
  cached = os.path.isdir(os.path.join(cache_dir, f"evaluator-{key}"))
  start = time.time()
  evaluator = evaluator_lib.get_or_train_evaluator(
      train, config.evaluator, cache_dir, log_dir=os.path.join(workdir, "tb"))
  seconds = time.time() - start

  families = procedural_families(test)
  sanity = evaluation.evaluator_sanity(evaluator, test, config.seed, families=families)

  # The ground-truth row of a results table: the real motions scored as if generated. Run
  # twice with one key to show that the numbers are a function of the key.
  generate = evaluation.real_motion_generator(test)
  eval_key = jax.random.PRNGKey(config.seed)
  eval_config = evaluation.resolve_config(config.eval)
  eval_config.num_samples = min(eval_config.num_samples, len(test.lengths))
  eval_config.multimodality_prompts = 0   # real motions have one "generation" per prompt
  first = evaluation.evaluate(generate, test, evaluator, eval_key, eval_config)
  second = evaluation.evaluate(generate, test, evaluator, eval_key, eval_config)

  report = {
      "data_root": root, "train_split": train.split, "test_split": test.split,
      "num_train": len(train.lengths), "num_test": len(test.lengths),
      "train_fingerprint": train.fingerprint(), "cache_key": key,
      "cache_path": os.path.join(cache_dir, f"evaluator-{key}"), "loaded_from_cache": cached,
      "seconds_to_get_evaluator": seconds, "training": evaluator.info,
      "families_known": families is not None, "sanity": sanity,
      "real_as_generated": first, "same_key_same_metrics": first == second,
  }
  outputs.write_json(os.path.join(workdir, "evaluator_report.json"), report)
  print(f"evaluator {'loaded' if cached else 'trained'} in {seconds:.1f}s -> "
        f"{report['cache_path']}")
  for name in ("fid_real_halves", "fid_real_shuffled", "fid_real_noise",
               "fid_halves_over_shuffled", "real_r_precision_top3",
               "own_closer_than_other_family"):
    if name in sanity:
      print(f"  {name}: {sanity[name]:.4f}")
  return report
