"""Figures of a self-consuming loop: each metric against generation, one line per variant.

The paper's figures plot FID and the physical metrics of every variant over the generations
of one (n, lambda) setting; `setting_figure` draws one such figure from metric rows (those of
metrics.jsonl, or means over seeds), with a panel per metric, integer generation ticks, the
95% interval as a band where rows carry `<metric>_ci95`, and reference lines: the real data's
own value (what a perfect generator would score) and the correction floor (the real test
motions after physics correction, the level self_correcting cannot go below).
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib import ticker  # noqa: E402  (the backend must be chosen first)
import matplotlib.pyplot as plt  # noqa: E402

# Variant -> line colour, fixed so the figures of different runs read the same way.
COLORS = {"baseline": "tab:gray", "self_consuming": "tab:red", "self_correcting": "tab:blue",
          "generation0": "black"}
# Row metric -> the name its interval and its real-data reference carry in evaluation
# results (rows rename matching_score to matching).
_EVALUATION_NAMES = {"matching": "matching_score"}
# Metric -> key of the real data's own value in a row.
_REAL_KEYS = {"fid": "real_fid", "r_precision_top1": "real_r_precision_top1",
              "r_precision_top2": "real_r_precision_top2",
              "r_precision_top3": "real_r_precision_top3",
              "matching": "real_matching_score", "diversity": "real_diversity"}
# Metric -> key in correction_floor.json.
_FLOOR_KEYS = {"fid": "fid", "r_precision_top1": "r_precision_top1",
               "r_precision_top2": "r_precision_top2", "r_precision_top3": "r_precision_top3",
               "matching": "matching_score", "diversity": "diversity", "float_mm": "float_mm",
               "penetrate_mm": "penetrate_mm", "skate": "skate",
               "tracking_error_m": "tracking_error_m", "fall_rate": "fall_rate"}
REFERENCE_STYLES = {"real data": dict(color="tab:green", linestyle="--", lw=1.2),
                    "correction floor": dict(color="tab:purple", linestyle=":", lw=1.5)}


def metric_value(row: Mapping[str, Any], metric: str) -> float | None:
  """A row's scalar value of `metric` (r_precision_topK from the r_precision list)."""
  if metric.startswith("r_precision_top"):
    values = row.get("r_precision")
    k = int(metric[len("r_precision_top"):]) - 1
    if isinstance(values, (list, tuple)) and k < len(values):
      return values[k]
  value = row.get(metric)
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def metric_interval(row: Mapping[str, Any], metric: str) -> float | None:
  """The 95% interval half-width a row carries for `metric` (`<metric>_ci95`), if any."""
  for name in (metric, _EVALUATION_NAMES.get(metric, metric)):
    value = row.get(f"{name}_ci95")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
  return None


def reference_lines(rows: Sequence[Mapping[str, Any]], floor: Mapping[str, Any] | None = None
                    ) -> dict[str, list[tuple[str, float]]]:
  """metric -> [(label, value)]: the real data's value and the correction floor's.

  The real data's value is the mean over rows of their real_* fields (the evaluator's score
  of the real motions of the evaluation prompts: real_fid is real vs real).
  """
  out: dict[str, list[tuple[str, float]]] = {}
  for metric, key in _REAL_KEYS.items():
    values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    if values:
      # One run's rows all carry the same value: keep it exact rather than a mean.
      value = values[0] if len(set(values)) == 1 else sum(values) / len(values)
      out.setdefault(metric, []).append(("real data", value))
  for metric, key in _FLOOR_KEYS.items():
    if floor and isinstance(floor.get(key), (int, float)):
      out.setdefault(metric, []).append(("correction floor", float(floor[key])))
  return out


def settings(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, float]]:
  """The (n, lambda) settings that get a figure (baseline's lambda 0 only when alone)."""
  found = sorted({(r["n"], r["lambda"]) for r in rows if r["variant"] != "baseline"})
  return found or sorted({(r["n"], r["lambda"]) for r in rows})


def setting_figure(rows: Sequence[Mapping[str, Any]], n: int, ratio: float,
                   metrics: Sequence[str],
                   references: Mapping[str, Sequence[tuple[str, float]]] | None = None,
                   title: str | None = None) -> plt.Figure | None:
  """One figure of a setting: a panel per metric with data, a line per variant.

  Rows need keys variant, lambda, n, generation; baseline rows (lambda 0) are drawn in the
  figure of every lambda. Returns None when no metric has data.
  """
  references = references or {}
  lines: dict[str, list[Mapping[str, Any]]] = {}
  for row in rows:
    if row["n"] == n and (row["lambda"] == ratio or row["variant"] == "baseline"):
      lines.setdefault(row["variant"], []).append(row)
  panels = []
  for metric in metrics:
    curves = {}
    for variant, variant_rows in sorted(lines.items()):
      points = sorted((r["generation"], metric_value(r, metric), metric_interval(r, metric))
                      for r in variant_rows if metric_value(r, metric) is not None)
      if points:
        curves[variant] = points
    if curves:
      panels.append((metric, curves))
  if not panels:
    return None
  cols = min(4, len(panels))
  rows_count = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows_count, cols, figsize=(3.8 * cols, 3.0 * rows_count),
                           squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  for ax, (metric, curves) in zip(axes.flat, panels):
    for variant, points in curves.items():
      gens = [p[0] for p in points]
      values = [p[1] for p in points]
      color = COLORS.get(variant)
      ax.plot(gens, values, marker="o", markersize=3, label=variant, color=color)
      if any(p[2] for p in points):
        half = [p[2] or 0.0 for p in points]
        ax.fill_between(gens, [v - h for v, h in zip(values, half)],
                        [v + h for v, h in zip(values, half)], color=color, alpha=0.15, lw=0)
    for label, value in references.get(metric, ()):
      ax.axhline(value, label=label, **REFERENCE_STYLES.get(label, {}))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_title(metric)
    ax.grid(alpha=0.25)
  handles, labels = {}, []
  for ax in axes.flat[:len(panels)]:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      if label not in handles:
        handles[label] = handle
        labels.append(label)
  height = 3.0 * rows_count  # inches; title and legend take fixed inches at the top
  fig.suptitle(title or f"n = {n}, lambda = {ratio:g}", y=1.0 - 0.08 / height,
               fontsize="medium", va="top")
  fig.legend([handles[l] for l in labels], labels, loc="upper center", ncol=len(labels),
             fontsize="small", bbox_to_anchor=(0.5, 1.0 - 0.3 / height), frameon=False)
  fig.tight_layout(rect=(0, 0, 1, 1.0 - 0.6 / height))
  return fig


def figure_png(fig: plt.Figure, dpi: int = 90) -> bytes:
  """The figure as PNG bytes; closes it."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi)
  plt.close(fig)
  return buffer.getvalue()


def plot_metrics(rows: Sequence[Mapping[str, Any]], out_dir: str, metrics: Sequence[str],
                 references: Mapping[str, Sequence[tuple[str, float]]] | None = None
                 ) -> list[str]:
  """Writes out_dir/n{n}_lambda{l}.png per setting (see `setting_figure`).

  Returns:
    The paths written.
  """
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for n, ratio in settings(rows):
    fig = setting_figure(rows, n, ratio, metrics, references)
    if fig is None:
      continue
    path = os.path.join(out_dir, f"n{n}_lambda{ratio:g}.png")
    with open(path, "wb") as f:
      f.write(figure_png(fig, dpi=80))
    written.append(path)
  return written
