"""Figures of a self-consuming loop: each metric against generation, one line per variant.

The paper's figures plot FID and the physical metrics of every variant over the generations
of one (n, lambda) setting; `plot_metrics` draws one figure per setting from the rows of
metrics.jsonl, with a panel per metric.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

# Variant -> line colour, fixed so the figures of different runs read the same way.
COLORS = {"baseline": "tab:gray", "self_consuming": "tab:red", "self_correcting": "tab:blue"}


def _value(row: Mapping[str, Any], metric: str) -> float | None:
  if metric.startswith("r_precision_top"):
    values = row.get("r_precision")
    k = int(metric[len("r_precision_top"):]) - 1
    if isinstance(values, (list, tuple)) and k < len(values):
      return values[k]
    return row.get(metric)
  value = row.get(metric)
  return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def plot_metrics(rows: Sequence[Mapping[str, Any]], out_dir: str,
                 metrics: Sequence[str]) -> list[str]:
  """Writes out_dir/n{n}_lambda{l}.png per setting: one panel per metric with data.

  Rows need keys variant, lambda, n, generation. Baseline rows (lambda 0) are drawn in the
  figure of every lambda, as the reference line.

  Returns:
    The paths written.
  """
  os.makedirs(out_dir, exist_ok=True)
  settings = sorted({(r["n"], r["lambda"]) for r in rows if r["variant"] != "baseline"})
  if not settings:
    settings = sorted({(r["n"], r["lambda"]) for r in rows})
  written = []
  for n, ratio in settings:
    lines: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
      if row["n"] == n and (row["lambda"] == ratio or row["variant"] == "baseline"):
        lines.setdefault(row["variant"], []).append(row)
    panels = []
    for metric in metrics:
      curves = {}
      for variant, variant_rows in sorted(lines.items()):
        points = sorted((r["generation"], _value(r, metric)) for r in variant_rows
                        if _value(r, metric) is not None)
        if points:
          curves[variant] = points
      if curves:
        panels.append((metric, curves))
    if not panels:
      continue
    cols = min(4, len(panels))
    rows_count = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_count, cols, figsize=(3.6 * cols, 2.8 * rows_count),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
      ax.axis("off")
    for ax, (metric, curves) in zip(axes.flat, panels):
      for variant, points in curves.items():
        gens, values = zip(*points)
        ax.plot(gens, values, marker="o", markersize=3, label=variant,
                color=COLORS.get(variant))
      ax.set_xlabel("generation")
      ax.set_title(metric)
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(f"n = {n}, lambda = {ratio:g}")
    fig.tight_layout()
    path = os.path.join(out_dir, f"n{n}_lambda{ratio:g}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
  return written
