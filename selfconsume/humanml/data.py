"""The motion experiment's data: the run's datasets, the loop's examples, training batches,
prompt draws, and the files a run keeps beside its checkpoints.

An example in a loop Buffer is a dict
  'motion'       (frames, 263) float32, normalised, zero on padded frames
  'lengths'      () int32, real frames
  'text_ids'     (captions, max_len) int32, every caption of the motion (0-padded)
  'text_mask'    (captions, max_len) bool
  'num_captions' () int32
A training batch picks one of each example's captions at random (HumanML3D trains on a random
caption of a motion); a synthetic example carries the one caption it was generated from.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selfconsume import loop
from selfconsume import outputs
from selfconsume import parallel
from selfconsume import workdir as workdir_lib
from selfconsume.data import humanml3d
from selfconsume.data import procedural
from selfconsume.data import subsets
from selfconsume.data import text as text_lib
from selfconsume.errors import DataError
from selfconsume.humanml import checks

Example = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class MotionData:
  """The datasets of a run.

  Attributes:
    train: the full training split (vocabulary, evaluator training, the n-subsets).
    test: the evaluation split.
    vocab: word vocabulary of the training captions (the MDM text encoder's).
    root: dataset directory.
  """
  train: Any
  test: Any
  vocab: text_lib.Vocabulary
  root: str


def dataset_root(config: ml_collections.ConfigDict, workdir: str) -> str:
  """config.data.root, or the procedural corpus (built on first use) when it is empty."""
  if config.data.root:
    if not os.path.isdir(config.data.root):
      raise DataError(f"config.data.root={config.data.root!r} is not a directory")
    return config.data.root
  corpus_dir = config.data.corpus_dir or os.path.join(workdir, "corpus")
  build = lambda: procedural.ensure_corpus(corpus_dir, int(config.data.corpus_size),
                                          int(config.data.corpus_seed))
  # Under jax.distributed process 0 builds the corpus and the others wait, then read it.
  root = build() if parallel.is_file_writer() else None
  parallel.sync(f"corpus {corpus_dir}")
  return root if root is not None else build()


def load_data(config: ml_collections.ConfigDict, workdir: str) -> MotionData:
  root = dataset_root(config, workdir)
  kwargs = dict(min_frames=int(config.data.min_frames), max_frames=int(config.data.max_frames))
  train = humanml3d.load(root, config.data.split, **kwargs)
  test = humanml3d.load(root, config.data.test_split, **kwargs)
  vocab = text_lib.Vocabulary.build(c for captions in train.captions for c in captions)
  return MotionData(train=train, test=test, vocab=vocab, root=root)


def load_subset(config: ml_collections.ConfigDict, data: MotionData, n: int) -> Any:
  """The n real training motions: the ids of config.data.subset_ids, or n drawn by seed."""
  subset_ids = None
  if config.data.subset_ids:
    # 'paper:64' etc. or a file. The paper's 64/128/256 lists hold one id more than their
    # name; the first n are used (loop.sizes = (65,) trains on the whole paper:64 list).
    subset_ids = subsets.read_subset_ids(config.data.subset_ids)
    if len(subset_ids) < n:
      raise DataError(f"{config.data.subset_ids}: {len(subset_ids)} ids, but n = {n} "
                      "motions were asked for (config.loop.sizes)")
    subset_ids = subset_ids[:n]
  subset = humanml3d.load(data.root, config.data.split, min_frames=int(config.data.min_frames),
                          max_frames=int(config.data.max_frames), subset_ids=subset_ids,
                          num_motions=None if subset_ids else n, seed=int(config.seed))
  if subset_ids is None and len(subset.lengths) != n:
    raise DataError(f"{data.root} [{config.data.split}]: asked for n = {n} motions, found "
                    f"{len(subset.lengths)} (between {config.data.min_frames} and "
                    f"{config.data.max_frames} frames)")
  return subset


def caption_slots(config: ml_collections.ConfigDict, data: MotionData) -> int:
  """Captions kept per example: the most any training motion has, at most
  config.text.max_captions."""
  most = max(1, max(len(c) for c in data.train.captions))
  return min(most, int(config.text.get("max_captions", 8)))


def real_examples(config: ml_collections.ConfigDict, data: MotionData, n: int) -> loop.Buffer:
  """The loop's buffer of the n real training motions (`load_subset`), every caption."""
  subset = load_subset(config, data, n)
  return loop.make_buffer(encode_examples(
      subset.motions, subset.lengths, subset.captions, data.vocab, int(config.text.max_len),
      caption_slots(config, data)))


def encode_examples(motions: np.ndarray, lengths: np.ndarray,
                    captions: Sequence[Sequence[str]], vocab: text_lib.Vocabulary,
                    max_len: int, max_captions: int) -> Example:
  """Buffer examples from motions (N, frames, 263), lengths (N,) and each one's captions."""
  num = len(lengths)
  ids = np.zeros((num, max_captions, max_len), np.int32)
  counts = np.zeros((num,), np.int32)
  for row, options in enumerate(captions):
    if not options:
      raise DataError(f"motion {row} has no caption")
    options = list(options)[:max_captions]
    ids[row, :len(options)] = text_lib.encode(options, vocab, max_len)[0]
    counts[row] = len(options)
  return {"motion": jnp.asarray(motions, jnp.float32),
          "lengths": jnp.asarray(lengths, jnp.int32),
          "text_ids": jnp.asarray(ids), "text_mask": jnp.asarray(ids > 0),
          "num_captions": jnp.asarray(counts)}


def training_batch(key: jax.Array, buffer: loop.Buffer, batch_size: int) -> dict[str, jax.Array]:
  """A training batch for selfconsume.humanml.training: uniform over the buffer, a random
  caption each."""
  draw_key, caption_key = jax.random.split(key)
  ex = loop.draw_batch(draw_key, buffer, batch_size)
  pick = jnp.floor(jax.random.uniform(caption_key, (batch_size,)) *
                   ex["num_captions"]).astype(jnp.int32)
  rows = jnp.arange(batch_size)
  return {"motion": ex["motion"], "lengths": ex["lengths"],
          "text_ids": ex["text_ids"][rows, pick], "text_mask": ex["text_mask"][rows, pick]}


def num_prompts(real: loop.Buffer) -> int:
  """The (motion, caption) pairs of the real set: the most `draw_prompts` can draw."""
  return int(np.sum(np.where(np.asarray(real.valid), np.asarray(real.data["num_captions"]), 0)))


def draw_prompts(key: jax.Array, real: loop.Buffer, count: int) -> tuple[jax.Array, jax.Array]:
  """`count` (motion, caption) pairs of the real set, without replacement.

  Returns (rows (count,), caption index (count,)); the motion's real length goes with it.
  """
  num, captions = real.data["text_ids"].shape[:2]
  slot = jnp.arange(captions)[None, :]
  valid = (slot < real.data["num_captions"][:, None]) & real.valid[:, None]
  # Random scores; invalid pairs sort last, so the first `count` are a uniform draw
  # without replacement from the valid ones.
  scores = jnp.where(valid, jax.random.uniform(key, valid.shape), 2.0).reshape(-1)
  order = jnp.argsort(scores)[:count]
  return order // captions, order % captions


def decode_caption(vocab: text_lib.Vocabulary, ids: np.ndarray) -> str:
  """The words of one caption's ids (max_len,); 0 is padding."""
  return " ".join(vocab.words[i] for i in np.asarray(ids) if i > 0)


def write_run_files(workdir: str, config: ml_collections.ConfigDict, data: MotionData) -> None:
  """What experiments/sample.py needs besides a checkpoint: vocabulary and normalisation.

  Called once the data are loaded, before the evaluator or generation 0 are built: first
  the checks that need the data (lambda * n prompts, selfconsume.humanml.checks.humanml_data),
  then, on a rerun, that the data are the run's (dataset.json's content fingerprints, else
  a WorkdirError and nothing written). The files are the run's metadata: each is written
  once, atomically, and dataset.json last, so its presence says they all are.
  """
  checks.humanml_data(config, [load_subset(config, data, int(n)) for n in config.loop.sizes])
  record = {"root": data.root, "fingerprint": data.train.fingerprint(),
            "test_fingerprint": data.test.fingerprint(),
            "max_frames": int(config.data.max_frames), "min_frames": int(config.data.min_frames)}
  dataset_path = os.path.join(workdir, "dataset.json")
  if os.path.exists(dataset_path):
    workdir_lib.check_dataset_record(workdir, "dataset.json", outputs.read_json(dataset_path),
                                     record, ("fingerprint", "test_fingerprint"))
    return
  if not parallel.is_file_writer():
    return
  data.vocab.save(os.path.join(workdir, "vocab.json"))   # atomic (outputs.write_json)
  path = os.path.join(workdir, "normalization.npz")
  tmp = path + ".tmp.npz"
  np.savez(tmp, mean=np.asarray(data.train.mean, np.float32),
           std=np.asarray(data.train.std, np.float32))
  os.replace(tmp, path)
  outputs.write_json(dataset_path, record)
