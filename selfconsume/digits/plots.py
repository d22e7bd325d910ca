"""Pictures of the digits loop: image grids (samples, k-means centres) and metric curves."""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def image_grid(images: np.ndarray, rows: int, cols: int, scale: int = 4) -> np.ndarray:
  """Tiles images (rows * cols, H, W, 1) in [-1, 1] into a uint8 (rows*(H+1), cols*(W+1)) map.

  Each pixel is repeated `scale` times (8x8 digits are otherwise too small to see); a one-pixel
  grey line separates the tiles.
  """
  images = np.asarray(images, np.float32)[..., 0]
  h, w = images.shape[1:3]
  canvas = np.full((rows * (h + 1), cols * (w + 1)), 0.5, np.float32)
  for index in range(min(images.shape[0], rows * cols)):
    r, c = divmod(index, cols)
    canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = (images[index] + 1) / 2
  canvas = np.kron(np.clip(canvas, 0.0, 1.0), np.ones((scale, scale), np.float32))
  return (canvas * 255).astype(np.uint8)


def save_grid(path: str, images: np.ndarray, rows: int, cols: int, scale: int = 4) -> str:
  """Writes `image_grid(images, rows, cols)` as a PNG; returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  Image.fromarray(image_grid(images, rows, cols, scale)).save(tmp)
  os.replace(tmp, path)
  return path


def plot_curves(path: str, rows: Sequence[dict[str, Any]], metric: str,
                lambdas: Sequence[float], variants: Sequence[str]) -> str:
  """One panel per lambda: `metric` vs generation for each variant (mean over seeds, min-max band).

  The baseline (lambda = 0, no synthetic data) is drawn in every panel as the reference.
  """

  colours = {"baseline": "tab:gray", "self_consuming": "tab:red", "self_correcting": "tab:blue"}
  lambdas = list(lambdas) or [0.0]
  fig, axes = plt.subplots(1, len(lambdas), figsize=(4.5 * len(lambdas), 3.6), squeeze=False)
  for ax, lam in zip(axes[0], lambdas):
    for variant in variants:
      want = 0.0 if variant == "baseline" else lam
      selected = [r for r in rows if r["variant"] == variant and abs(r["lambda"] - want) < 1e-9
                  and r.get(metric) is not None]
      if not selected:
        continue
      generations = sorted({r["generation"] for r in selected})
      values = [[r[metric] for r in selected if r["generation"] == g] for g in generations]
      mean = np.array([np.mean(v) for v in values])
      ax.plot(generations, mean, label=variant, color=colours.get(variant))
      if max(len(v) for v in values) > 1:
        ax.fill_between(generations, [min(v) for v in values], [max(v) for v in values],
                        color=colours.get(variant), alpha=0.2)
    ax.set_title(f"lambda = {lam}")
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
  return path
