"""Summaries of repeated evaluations: mean and 95% confidence interval half-width."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

Z_95 = 1.96


def mean_and_interval(values: Sequence[float]) -> tuple[float, float]:
  """Mean and half-width of the 95% interval, 1.96 * std / sqrt(n) (0 when n == 1).

  This is the "±" convention of the text-to-motion papers (population std over the repeats).
  """
  x = np.asarray(values, np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"need a non-empty 1-D list of values, got shape {x.shape}")
  return float(x.mean()), float(Z_95 * x.std() / np.sqrt(x.size))


def summarize_repeats(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """Per-key mean and interval of repeated metric rows: {k: mean, k + '_ci95': half-width}."""
  if not rows:
    raise ValueError("no metric rows to summarize")
  out = {}
  for key in rows[0]:
    mean, half = mean_and_interval([row[key] for row in rows])
    out[key] = mean
    out[f"{key}_ci95"] = half
  return out
