"""Text-to-motion retrieval metrics of Guo et al. (2022): R-precision and matching score.

Embeddings come in matching pairs: row i of `text` describes row i of `motion`. Pairs are cut
into consecutive groups of `group_size` (32 in the protocol; a last incomplete group is dropped),
and inside each group every text ranks the group's motions by Euclidean distance. R-precision
top-k is the share of texts whose own motion is among the k nearest (chance for top-3 is
3/32 ~ 0.09); the matching score is the mean distance between a text and its own motion.
"""

from __future__ import annotations

import numpy as np

R_PRECISION_GROUP = 32


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distances (n, m) between rows of a (n, dim) and b (m, dim), in float64."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  squared = (np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T)
  return np.sqrt(np.clip(squared, 0.0, None))


def _check_pairs(text: np.ndarray, motion: np.ndarray, group_size: int) -> int:
  if text.shape != motion.shape or text.ndim != 2:
    raise ValueError(f"text and motion embeddings must both be (num, dim), got "
                     f"{text.shape} and {motion.shape}")
  num_groups = text.shape[0] // group_size
  if num_groups == 0:
    raise ValueError(f"need at least {group_size} pairs for R-precision, got {text.shape[0]}")
  return num_groups


def r_precision(text: np.ndarray, motion: np.ndarray, *, top_k: int = 3,
                group_size: int = R_PRECISION_GROUP) -> np.ndarray:
  """R-precision top-1..top_k.

  Args:
    text: (num, dim) text embeddings.
    motion: (num, dim) motion embeddings; row i matches text row i.
    top_k: largest k reported.
    group_size: texts per retrieval group (1 true + group_size - 1 other motions).

  Returns:
    (top_k,) float64: entry k-1 is the share of texts whose motion ranks within the k nearest.
  """
  text, motion = np.asarray(text), np.asarray(motion)
  num_groups = _check_pairs(text, motion, group_size)
  hits = np.zeros(top_k, np.float64)
  for g in range(num_groups):
    rows = slice(g * group_size, (g + 1) * group_size)
    dist = pairwise_distances(text[rows], motion[rows])
    own = np.diagonal(dist)[:, None]
    # Rank of the own motion = number of strictly closer motions (ties count in its favour).
    rank = np.sum(dist < own, axis=1)
    hits += np.array([np.sum(rank < k) for k in range(1, top_k + 1)], np.float64)
  return hits / (num_groups * group_size)


def matching_score(text: np.ndarray, motion: np.ndarray) -> float:
  """Mean Euclidean distance between each text (num, dim) and its motion (num, dim)."""
  text, motion = np.asarray(text, np.float64), np.asarray(motion, np.float64)
  if text.shape != motion.shape:
    raise ValueError(f"shape mismatch: {text.shape} vs {motion.shape}")
  return float(np.mean(np.linalg.norm(text - motion, axis=1)))
