"""Scores a text-to-motion generator with a frozen evaluator (the protocol of Guo et al. 2022).

`evaluate` draws a fixed set of test prompts (captions with their real lengths, chosen by
`config.prompt_seed`), generates one motion per prompt, embeds generated motions, real motions
and captions with the evaluator, and returns

  fid                      generated vs all real motions of the split
  r_precision_top1/2/3     each caption retrieves its generated motion among `batch_size` (32)
  matching_score           mean caption-to-generated-motion distance
  diversity                mean distance of `diversity_pairs` (300) random pairs of motions
  multimodality            mean distance between generations of one prompt (if enabled)
  real_*                   the same retrieval / spread metrics for the real motions of the
                           prompts, and real_fid = FID(real motions of the prompts, all real
                           motions): the values a perfect generator would reach

each with a `_ci95` half-width: over `config.num_repeats` repeats when there are several
(Guo et al.'s convention, 1.96 sd / sqrt(repeats)), else 1.96 times the standard deviation
over `config.bootstrap_samples` bootstrap resamples of the prompts, each with its generated
motion (the noise of scoring a finite test set with one draw per prompt). Repeats differ in
the generation keys and in the random grouping / pairing; the prompts stay the same. The same
key gives the same numbers. Physics metrics are added by the caller.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from selfconsume.errors import ConfigError, DataError, NonFiniteError
from selfconsume.metrics import diversity as diversity_lib
from selfconsume.metrics import fid as fid_lib
from selfconsume.metrics import intervals
from selfconsume.metrics import retrieval
from selfconsume.motion.frames import frame_mask

# generate_fn(captions, lengths (B,) int32, key) -> normalised motions (B, frames, 263).
GenerateFn = Callable[[Sequence[str], np.ndarray, jax.Array], np.ndarray]


def default_config() -> ml_collections.ConfigDict:
  """Evaluation sizes for the 2-core CPU machine (the paper protocol is in `paper_config`).

  The field names are those of `config.eval` in experiments/configs/humanml.py; fields after
  `multimodality_samples` are optional there (`resolve_config` fills them in).
  """
  c = ml_collections.ConfigDict()
  c.num_samples = 256            # fixed test prompts (generated motions per repeat)
  c.batch_size = retrieval.R_PRECISION_GROUP   # R-precision groups (1 true + 31 others)
  c.num_repeats = 1              # repeats for the 95% interval
  c.diversity_pairs = diversity_lib.DIVERSITY_PAIRS   # capped at the number of samples
  c.multimodality_prompts = 16   # 0 disables multimodality
  c.multimodality_samples = 8    # generations per multimodality prompt
  c.multimodality_pairs = 10     # pairs per prompt, capped at multimodality_samples
  c.prompt_seed = 0              # which prompts and which of their captions
  c.generate_batch_size = 64     # fixed batch shape handed to generate_fn
  # With one repeat, the 95% intervals come from this many bootstrap resamples of the
  # prompts (each with its generated motion); 0 turns them off.
  c.bootstrap_samples = 200
  return c


def smoke_config() -> ml_collections.ConfigDict:
  c = default_config()
  c.num_samples = 64
  c.diversity_pairs = 32
  c.multimodality_prompts = 4
  c.multimodality_samples = 4
  c.generate_batch_size = 32
  return c


def paper_config() -> ml_collections.ConfigDict:
  """Guo et al.: 20 repeats, multimodality over 100 prompts x 30 generations, 10 pairs each."""
  c = default_config()
  c.num_samples = 1024
  c.num_repeats = 20
  c.multimodality_prompts = 100
  c.multimodality_samples = 30
  return c


def resolve_config(config: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
  """`default_config()` overridden by the fields of `config` (which may be partial).

  Unknown fields (other than `evaluator` / `evaluator_cache`, which configure the evaluator
  itself) are a ConfigError.
  """
  resolved = default_config()
  for name, value in (config or {}).items():
    if name in ("evaluator", "evaluator_cache"):
      continue
    if name not in resolved:
      raise ConfigError(f"unknown evaluation field {name!r}; known: {sorted(resolved)}")
    resolved[name] = value
  c = resolved
  if c.batch_size < 2 or c.num_samples < c.batch_size:
    raise ConfigError(f"evaluation.num_samples ({c.num_samples}) must be >= "
                      f"evaluation.batch_size ({c.batch_size}) >= 2")
  if c.bootstrap_samples < 0:
    raise ConfigError(f"evaluation.bootstrap_samples must be >= 0, got {c.bootstrap_samples}")
  if c.num_repeats < 1 or c.generate_batch_size < 1 or c.diversity_pairs < 1:
    raise ConfigError("evaluation.num_repeats, generate_batch_size and diversity_pairs "
                      "must be >= 1")
  if c.multimodality_prompts and (c.multimodality_samples < 2 or c.multimodality_pairs < 1):
    raise ConfigError(f"multimodality needs evaluation.multimodality_samples >= 2 (got "
                      f"{c.multimodality_samples}) and multimodality_pairs >= 1")
  return c


@dataclasses.dataclass(frozen=True)
class Prompts:
  """Fixed evaluation prompts: dataset rows (num,), one caption each, real lengths (num,)."""
  indices: np.ndarray
  captions: list[str]
  lengths: np.ndarray


def select_prompts(dataset, num_samples: int, seed: int) -> Prompts:
  """`num_samples` distinct motions of `dataset` and one of each one's captions, by `seed`.

  Uses every motion when the split holds fewer than `num_samples`.
  """
  rng = np.random.default_rng(seed)
  num = len(dataset.lengths)
  if num == 0:
    raise DataError(f"{dataset.root} [{dataset.split}]: no motions to evaluate on")
  indices = np.sort(rng.choice(num, min(num_samples, num), replace=False))
  captions = []
  for i in indices:
    options = dataset.captions[i]
    if not options:
      raise DataError(f"{dataset.root} [{dataset.split}]: motion {dataset.ids[i]} has no caption")
    captions.append(options[rng.integers(len(options))])
  return Prompts(indices, captions, np.asarray(dataset.lengths, np.int32)[indices])


def generate_in_batches(generate_fn: GenerateFn, captions: Sequence[str], lengths: np.ndarray,
                        key: jax.Array, batch_size: int) -> np.ndarray:
  """Calls generate_fn on fixed-size batches (the last padded by repeating rows).

  Batch b uses key fold_in(key, b). Returns (num, frames, 263) with frames >= length zeroed.
  """
  captions, lengths = list(captions), np.asarray(lengths, np.int32)
  outputs = []
  for b, start in enumerate(range(0, len(captions), batch_size)):
    rows = np.arange(start, start + batch_size) % len(captions)
    size = min(batch_size, len(captions) - start)
    motions = np.asarray(generate_fn([captions[r] for r in rows], lengths[rows],
                                     jax.random.fold_in(key, b)), np.float32)
    if motions.ndim != 3 or motions.shape[0] != batch_size:
      raise DataError(f"generate_fn returned shape {motions.shape}; expected "
                      f"({batch_size}, frames, 263)")
    outputs.append(motions[:size])
  motions = np.concatenate(outputs)
  bad = ~np.all(np.isfinite(motions), axis=(1, 2))
  if bad.any():
    raise NonFiniteError(f"generate_fn produced NaN/inf in {int(bad.sum())} of "
                         f"{len(motions)} motions")
  return motions * np.asarray(frame_mask(lengths, motions.shape[1]))[..., None]


def _numpy_rng(key: jax.Array) -> np.random.Generator:
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint32).tolist())


def retrieval_metrics(text_emb: np.ndarray, motion_emb: np.ndarray, rng: np.random.Generator,
                      config: ml_collections.ConfigDict) -> dict[str, float]:
  """R-precision top-1/2/3 (pairs shuffled into groups by rng), matching score, diversity."""
  order = rng.permutation(len(text_emb))
  top = retrieval.r_precision(text_emb[order], motion_emb[order], top_k=3,
                              group_size=config.batch_size)
  return {
      "r_precision_top1": float(top[0]), "r_precision_top2": float(top[1]),
      "r_precision_top3": float(top[2]),
      "matching_score": retrieval.matching_score(text_emb, motion_emb),
      "diversity": diversity_lib.diversity(
          motion_emb, rng, min(config.diversity_pairs, len(motion_emb))),
  }


def _check_normalization(dataset, evaluator) -> None:
  if (not np.allclose(dataset.mean, evaluator.mean, rtol=1e-5, atol=1e-6)
      or not np.allclose(dataset.std, evaluator.std, rtol=1e-5, atol=1e-6)):
    raise DataError(f"{dataset.root} [{dataset.split}]: normalisation (Mean/Std) differs from "
                    f"the one the evaluator was trained with; embeddings would be meaningless")


def evaluate(generate_fn: GenerateFn, dataset, evaluator, key: jax.Array,
             config: ml_collections.ConfigDict) -> dict[str, float]:
  """Scores `generate_fn` on fixed prompts of `dataset` (normally the test split).

  Args:
    generate_fn: (captions list[str] of length B, lengths (B,) int32, key) -> normalised
      motions (B, frames, 263); called with B = config.generate_batch_size.
    dataset: MotionDataset of the evaluation split (same Mean/Std as the evaluator's).
    evaluator: a trained `selfconsume.humanml.evaluator.Evaluator`.
    key: PRNG key; the same key gives the same numbers.
    config: see `default_config()`; may be partial (e.g. humanml's `config.eval`).

  Returns:
    Flat dict of floats (see module docstring), plus `num_samples`, `num_repeats`.
  """
  config = resolve_config(config)
  _check_normalization(dataset, evaluator)
  prompts = select_prompts(dataset, config.num_samples, config.prompt_seed)
  real_all = evaluator.embed_motions(dataset.motions, dataset.lengths)
  real_mu, real_sigma = fid_lib.gaussian_statistics(real_all)
  real_prompts = real_all[prompts.indices]
  text = evaluator.embed_texts(prompts.captions)

  reference_key, key = jax.random.split(key)
  reference = retrieval_metrics(text, real_prompts, _numpy_rng(reference_key), config)
  results = {f"real_{k}": v for k, v in reference.items()}
  results["real_fid"] = fid_lib.frechet_distance(
      *fid_lib.gaussian_statistics(real_prompts), real_mu, real_sigma)

  rows = []
  for rep in range(config.num_repeats):
    gen_key, mm_key, metric_key = jax.random.split(jax.random.fold_in(key, rep), 3)
    motions = generate_in_batches(generate_fn, prompts.captions, prompts.lengths, gen_key,
                                  config.generate_batch_size)
    generated = evaluator.embed_motions(motions, prompts.lengths)
    rng = _numpy_rng(metric_key)
    row = retrieval_metrics(text, generated, rng, config)
    row["fid"] = fid_lib.frechet_distance(*fid_lib.gaussian_statistics(generated),
                                          real_mu, real_sigma)
    if config.multimodality_prompts:
      row["multimodality"] = _multimodality(generate_fn, evaluator, prompts, mm_key, rng, config)
    rows.append(row)
  results.update(intervals.summarize_repeats(rows))
  if config.num_repeats == 1 and config.bootstrap_samples > 0:
    results.update(bootstrap_intervals(text, generated, real_mu, real_sigma, rng, config))
  results["num_samples"] = float(len(prompts.indices))
  results["num_repeats"] = float(config.num_repeats)
  return results


def bootstrap_intervals(text_emb: np.ndarray, motion_emb: np.ndarray, real_mu: np.ndarray,
                        real_sigma: np.ndarray, rng: np.random.Generator,
                        config: ml_collections.ConfigDict) -> dict[str, float]:
  """95% half-widths (`name_ci95`) of fid and the retrieval metrics by the bootstrap.

  Resamples the (caption, generated motion) pairs with replacement
  `config.bootstrap_samples` times and takes 1.96 standard deviations of each metric.
  """
  num = len(text_emb)
  draws: dict[str, list[float]] = {}
  for _ in range(config.bootstrap_samples):
    pick = rng.integers(num, size=num)
    row = retrieval_metrics(text_emb[pick], motion_emb[pick], rng, config)
    row["fid"] = fid_lib.frechet_distance(*fid_lib.gaussian_statistics(motion_emb[pick]),
                                          real_mu, real_sigma)
    for name, value in row.items():
      draws.setdefault(name, []).append(value)
  return {f"{name}_ci95": float(intervals.Z_95 * np.std(values))
          for name, values in draws.items()}


def _multimodality(generate_fn: GenerateFn, evaluator, prompts: Prompts, key: jax.Array,
                   rng: np.random.Generator, config: ml_collections.ConfigDict) -> float:
  """Generates multimodality_samples motions for each of the first multimodality_prompts."""
  num = min(config.multimodality_prompts, len(prompts.captions))
  repeats = config.multimodality_samples
  captions = [prompts.captions[i] for i in range(num) for _ in range(repeats)]
  lengths = np.repeat(prompts.lengths[:num], repeats)
  motions = generate_in_batches(generate_fn, captions, lengths, key, config.generate_batch_size)
  embeddings = evaluator.embed_motions(motions, lengths).reshape(num, repeats, -1)
  return diversity_lib.multimodality(embeddings, rng,
                                     min(config.multimodality_pairs, repeats))


def real_motion_generator(dataset) -> GenerateFn:
  """A `generate_fn` that returns the real motion of each caption's dataset row.

  Useful as the ground-truth row of a results table and in tests. Captions map to the first
  row that carries them.
  """
  first_row = {}
  for row, options in enumerate(dataset.captions):
    for caption in options:
      first_row.setdefault(caption, row)

  def generate(captions, lengths, key):
    del lengths, key
    return np.asarray(dataset.motions)[[first_row[c] for c in captions]]

  return generate


# ----------------------------------------------------------------------------- sanity checks


def shuffle_frames(motions: np.ndarray, lengths: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
  """Randomly permutes the valid frames of each motion (num, frames, 263); padding stays 0."""
  out = np.zeros_like(motions)
  for i, length in enumerate(np.asarray(lengths)):
    out[i, :length] = motions[i, rng.permutation(length)]
  return out


def gaussian_noise_motions(motions: np.ndarray, lengths: np.ndarray,
                           rng: np.random.Generator) -> np.ndarray:
  """Standard normal features (the scale of normalised data) in the valid frames."""
  mask = np.asarray(frame_mask(lengths, motions.shape[1]))
  return (rng.standard_normal(motions.shape) * mask[..., None]).astype(np.float32)


def evaluator_sanity(evaluator, dataset, seed: int = 0,
                     families: Sequence[str | Sequence[str]] | None = None
                     ) -> dict[str, float]:
  """Checks that an evaluator's metrics separate real motions from corrupted ones.

  On `dataset` (normally the test split), with one caption per motion chosen by `seed`:
    fid_real_halves        FID between two random halves A, B of the real motions
    fid_real_shuffled      FID(A, B with frames shuffled in time)
    fid_real_noise         FID(A, standard normal features in place of B)
    fid_halves_over_shuffled / fid_halves_over_noise   the ratios (should be << 1)
    real_r_precision_top1/2/3, real_matching_score   real motions with their own captions,
                           groups of 32 in random order
  and, if `families` gives each motion its action family (a label, or the labels of the
  actions a motion strings together; two motions are of another family when they share none),
    own_caption_distance, other_family_caption_distance   mean motion-caption distances
    own_closer_than_other_family   share of (motion, caption of another family) pairs where
                           the motion's own caption is nearer
    own_closer_than_all_other_family   share of motions nearer to their own caption than to
                           every caption of another family
  """
  _check_normalization(dataset, evaluator)
  rng = np.random.default_rng(seed)
  motions = np.asarray(dataset.motions, np.float32)
  lengths = np.asarray(dataset.lengths, np.int32)
  num = len(lengths)
  if num < retrieval.R_PRECISION_GROUP:
    raise DataError(f"{dataset.root} [{dataset.split}]: {num} motions; the sanity checks "
                    f"need at least {retrieval.R_PRECISION_GROUP}")
  captions = [options[rng.integers(len(options))] for options in dataset.captions]
  real = evaluator.embed_motions(motions, lengths)
  text = evaluator.embed_texts(captions)

  order = rng.permutation(num)
  half_a, half_b = order[: num // 2], order[num // 2: 2 * (num // 2)]
  shuffled = evaluator.embed_motions(
      shuffle_frames(motions[half_b], lengths[half_b], rng), lengths[half_b])
  noise = evaluator.embed_motions(
      gaussian_noise_motions(motions[half_b], lengths[half_b], rng), lengths[half_b])
  out = {
      "num_motions": float(num),
      "fid_real_halves": fid_lib.fid(real[half_a], real[half_b]),
      "fid_real_shuffled": fid_lib.fid(real[half_a], shuffled),
      "fid_real_noise": fid_lib.fid(real[half_a], noise),
  }
  out["fid_halves_over_shuffled"] = out["fid_real_halves"] / max(out["fid_real_shuffled"], 1e-12)
  out["fid_halves_over_noise"] = out["fid_real_halves"] / max(out["fid_real_noise"], 1e-12)

  top = retrieval.r_precision(text[order], real[order], top_k=3)
  out.update({"real_r_precision_top1": float(top[0]), "real_r_precision_top2": float(top[1]),
              "real_r_precision_top3": float(top[2]),
              "real_matching_score": retrieval.matching_score(text, real)})

  if families is not None:
    if len(families) != num:
      raise ValueError(f"families must hold {num} entries, got {len(families)}")
    sets = [frozenset([f]) if isinstance(f, str) else frozenset(f) for f in families]
    other = np.array([[not (a & b) for b in sets] for a in sets])
    dist = retrieval.pairwise_distances(real, text)            # (motion, caption)
    own = np.diagonal(dist)
    if not other.any():
      raise DataError(f"{dataset.root} [{dataset.split}]: only one action family present")
    out["own_caption_distance"] = float(own.mean())
    out["other_family_caption_distance"] = float(dist[other].mean())
    out["own_closer_than_other_family"] = float(
        np.sum((own[:, None] < dist) & other) / other.sum())
    nearest_other = np.where(other, dist, np.inf).min(axis=1)
    out["own_closer_than_all_other_family"] = float(np.mean(own < nearest_other))
  return out
