"""Which evaluator scored a run, recorded in its workdir so that every number traces back to it.

A motion run's FID, R-precision, matching and diversity are measured in the embedding space
of our own evaluator (`selfconsume.humanml.evaluator`), trained on the run's training split.
When the run starts, `load_or_train` keeps a copy of that evaluator in the workdir (evaluator/,
a selfconsume.checkpoint directory like the cache's, written by `evaluator.save_evaluator`) and
`record` writes evaluator.json:

  fingerprint        sha256 of the evaluator's weights, vocabulary, normalisation, input
                     length and config: two evaluators with the same fingerprint embed
                     every motion identically
  cache_key          its key in the evaluator cache (data fingerprint + config)
  data_fingerprint   fingerprint of the training split it was trained on
  real_fid           FID of the real test motions of the evaluation prompts against all real
                     test motions: the value a perfect generator would reach
  config, info       its config and training summary

A resumed run and `python -m experiments.evaluate` load the workdir's copy and refuse an
evaluator whose fingerprint differs from the record.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import flax.serialization
import ml_collections
import numpy as np

from selfconsume import outputs
from selfconsume import parallel
from selfconsume.errors import CheckpointError
from selfconsume.humanml import evaluation
from selfconsume.humanml import evaluator as evaluator_lib
from selfconsume.metrics import fid as fid_lib

RECORD_FILE = "evaluator.json"
COPY_DIR = "evaluator"


def fingerprint(evaluator: Any) -> str:
  """sha256 (16 hex digits) of everything that decides an evaluator's embeddings."""
  digest = hashlib.sha256()
  # msgpack bytes only as the hash's input (the weights are stored by selfconsume.checkpoint):
  # unchanged, so that the records of earlier runs still match their evaluators.
  digest.update(flax.serialization.msgpack_serialize(evaluator.params))
  digest.update(json.dumps(list(evaluator.vocab.words)).encode())
  digest.update(np.asarray(evaluator.mean, np.float32).tobytes())
  digest.update(np.asarray(evaluator.std, np.float32).tobytes())
  config = {k: v for k, v in evaluator.config.to_dict().items() if k != "embed_batch_size"}
  digest.update(json.dumps({"max_frames": int(evaluator.max_frames), "config": config},
                           sort_keys=True, default=str).encode())
  return digest.hexdigest()[:16]


def copy_path(workdir: str) -> str:
  return os.path.join(workdir, COPY_DIR)


def read_record(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.exists(path):
    return None
  try:
    return outputs.read_json(path)
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{path}: unreadable evaluator record ({e})") from e


def load_or_train(workdir: str, dataset: Any, config: ml_collections.ConfigDict,
                  cache_dir: str | None = None, *, log_dir: str | None = None) -> Any:
  """The run's evaluator: the workdir's copy, else the cached (or newly trained) one, copied.

  Args:
    workdir: the run's directory.
    dataset: the training split the evaluator is (or was) trained on.
    config: config.eval.evaluator (may be partial).
    cache_dir: config.eval.evaluator_cache ('' or None: ~/.cache/selfconsume/evaluators).
    log_dir: TensorBoard directory for a newly trained evaluator.

  Raises:
    CheckpointError: the workdir's copy was trained on other data or with another config.
  """
  resolved = evaluator_lib.resolve_config(config)
  path = copy_path(workdir)
  # The copy appears only once complete (see save_evaluator), so a directory here is one:
  # loaded, or refused in one line when truncated or of an older cache version.
  if os.path.isdir(path):
    evaluator = evaluator_lib.load_evaluator(path, dataset)
    wanted = evaluator_lib.cache_key(dataset.fingerprint(), resolved)
    if evaluator_lib.cache_key(evaluator.fingerprint, evaluator.config) != wanted:
      raise CheckpointError(f"{path}: this run's evaluator was trained with another "
                            "config.eval.evaluator than the one given now")
    return evaluator
  evaluator = evaluator_lib.get_or_train_evaluator(dataset, resolved, cache_dir or None,
                                                   log_dir=log_dir)
  if parallel.is_file_writer():
    evaluator_lib.save_evaluator(evaluator, path)
  parallel.sync(f"evaluator copy {path}")
  return evaluator


def real_vs_real_fid(evaluator: Any, test: Any, eval_config: ml_collections.ConfigDict) -> float:
  """FID(real motions of the evaluation prompts, all real test motions): rows' real_fid."""
  resolved = evaluation.resolve_config(eval_config)
  prompts = evaluation.select_prompts(test, resolved.num_samples, resolved.prompt_seed)
  real = evaluator.embed_motions(test.motions, test.lengths)
  return float(fid_lib.frechet_distance(*fid_lib.gaussian_statistics(real[prompts.indices]),
                                        *fid_lib.gaussian_statistics(real)))


def describe(evaluator: Any) -> dict[str, Any]:
  """The identity fields of the record (without real_fid)."""
  return {"fingerprint": fingerprint(evaluator),
          "cache_key": evaluator_lib.cache_key(evaluator.fingerprint, evaluator.config),
          "data_fingerprint": evaluator.fingerprint}


def record(workdir: str, evaluator: Any, test: Any,
           eval_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Writes evaluator.json on the run's first start; later starts check it. Returns it.

  Raises:
    CheckpointError: the workdir records a different evaluator.
  """
  existing = read_record(workdir)
  identity = describe(evaluator)
  if existing is not None:
    check(workdir, identity, existing)
    return existing
  entry = dict(identity, real_fid=real_vs_real_fid(evaluator, test, eval_config),
               max_frames=int(evaluator.max_frames), config=evaluator.config.to_dict(),
               info=evaluator.info, copy=COPY_DIR)
  if parallel.is_file_writer():
    outputs.write_json(os.path.join(workdir, RECORD_FILE), entry)
  return entry


def check(workdir: str, identity: dict[str, Any], existing: dict[str, Any] | None = None
          ) -> dict[str, Any]:
  """Raises a one-line CheckpointError unless `identity` (see `describe`) is the recorded one."""
  existing = read_record(workdir) if existing is None else existing
  path = os.path.join(workdir, RECORD_FILE)
  if existing is None:
    raise CheckpointError(f"{path} is missing: this workdir does not record which evaluator "
                          "scored it, so its numbers cannot be re-scored comparably")
  for field in ("data_fingerprint", "fingerprint"):
    if existing.get(field) != identity.get(field):
      what = "the data it was trained on" if field == "data_fingerprint" else "its weights"
      raise CheckpointError(
          f"{path}: the run was scored by evaluator {existing.get('fingerprint')} (data "
          f"{existing.get('data_fingerprint')}), the one found now differs in {what} "
          f"({field} {identity.get(field)}); its numbers would not be comparable")
  return existing
