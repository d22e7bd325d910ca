"""Spread of motion embeddings: diversity (over the whole set) and multimodality (per prompt)."""

from __future__ import annotations

import numpy as np

DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10


def diversity(embeddings: np.ndarray, rng: np.random.Generator,
              num_pairs: int = DIVERSITY_PAIRS) -> float:
  """Mean distance between `num_pairs` random pairs of embeddings (num, dim).

  As in Guo et al. (2022): two index sets of size num_pairs are drawn without replacement and
  paired position by position.
  """
  x = np.asarray(embeddings, np.float64)
  if x.ndim != 2 or x.shape[0] < num_pairs:
    raise ValueError(f"diversity over {num_pairs} pairs needs >= {num_pairs} embeddings, "
                     f"got shape {x.shape}")
  first = rng.choice(x.shape[0], num_pairs, replace=False)
  second = rng.choice(x.shape[0], num_pairs, replace=False)
  return float(np.mean(np.linalg.norm(x[first] - x[second], axis=1)))


def multimodality(embeddings: np.ndarray, rng: np.random.Generator,
                  num_pairs: int = MULTIMODALITY_PAIRS) -> float:
  """Mean distance between generations of the same prompt.

  Args:
    embeddings: (num_prompts, num_repeats, dim): num_repeats generations for each prompt.
    rng: draws `num_pairs` pairs of repeats per prompt (the same index pairs for all prompts).
    num_pairs: pairs per prompt; <= num_repeats.

  Returns:
    Mean over prompts and pairs of the Euclidean distance.
  """
  x = np.asarray(embeddings, np.float64)
  if x.ndim != 3 or x.shape[1] < 2 or x.shape[1] < num_pairs:
    raise ValueError(f"multimodality needs (prompts, repeats >= max(2, {num_pairs}), dim), "
                     f"got shape {x.shape}")
  first = rng.choice(x.shape[1], num_pairs, replace=False)
  second = rng.choice(x.shape[1], num_pairs, replace=False)
  return float(np.mean(np.linalg.norm(x[:, first] - x[:, second], axis=-1)))
