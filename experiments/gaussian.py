"""Driver of the Gaussian toy: runs the gamma x lambda x seed grid and writes its results.

Outputs in the workdir:
  summary.json  rows, one per (gamma, lambda): w2_final_mean, w2_final_ci95, w2_last100_mean
  curves.npz    w2 (gammas, lambdas, seeds, generations + 1) and the grid axes
  w2.png        the paper's figure: W2 vs generation at config.synthetic_ratio, a band over seeds
  stability.png mean W2 of the last generations over the lambda x gamma grid, with the
                theorem's stability boundary
  tensorboard/  the mean W2 curve of each (gamma, lambda)
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import scipy.stats
import tqdm

from experiments.configs import gaussian as gaussian_config
from selfconsume import loop
from selfconsume import metric_writers
from selfconsume import outputs
from selfconsume import validation
from selfconsume import workdir as workdir_lib
from selfconsume.errors import ConfigError
from selfconsume.gaussian import theory
from selfconsume.gaussian import toy


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for values the experiment cannot run with."""
  if config.num_real < 2:
    raise ConfigError(f"config.num_real (n) must be >= 2 to fit a covariance, got {config.num_real}")
  if config.num_seeds < 1:
    raise ConfigError(f"config.num_seeds must be >= 1, got {config.num_seeds}")
  if config.num_generations < 1:
    raise ConfigError(f"config.num_generations must be >= 1, got {config.num_generations}")
  if config.synthetic_ratio < 0:
    raise ConfigError(f"config.synthetic_ratio (lambda) must be >= 0, got {config.synthetic_ratio}")
  if any(r < 0 for r in config.synthetic_ratios):
    raise ConfigError(f"config.synthetic_ratios (lambda) must all be >= 0, got {config.synthetic_ratios}")
  if not config.gammas or any(g < 0 for g in config.gammas):
    raise ConfigError(f"config.gammas must be a non-empty list of values >= 0, got {config.gammas}")
  if config.corrector not in ("histogram", "mixture"):
    raise ConfigError(f"config.corrector must be 'histogram' or 'mixture', got {config.corrector!r}")
  if config.corrector == "histogram" and config.dim != 2:
    raise ConfigError("config.corrector = 'histogram' uses a 2-D histogram; set config.dim = 2")
  if not 1 <= config.last_window <= config.num_generations + 1:
    raise ConfigError(f"config.last_window must be in 1..num_generations+1, got {config.last_window}")


def grid_axes(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  gammas = np.asarray(sorted(set(float(g) for g in config.gammas)))
  ratios = np.asarray(sorted(set(float(r) for r in config.synthetic_ratios) | {float(config.synthetic_ratio)}))
  return gammas, ratios


def run_grid(config: ml_collections.ConfigDict, progress: bool = True) -> dict[str, np.ndarray]:
  """W2 curves for every (gamma, lambda, seed): array (gammas, lambdas, seeds, generations + 1).

  One compiled program per lambda (m = floor(lambda n) fixes the shapes), vmapped over
  gamma x seed. Seeds are shared across gammas and lambdas (common random numbers), so
  differences between gammas are not seed noise.
  """
  gammas, ratios = grid_axes(config)
  seeds = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  curves = np.zeros((len(gammas), len(ratios), config.num_seeds, config.num_generations + 1))
  compile_s = 0.0
  keys = jnp.tile(seeds, len(gammas))
  gamma_lanes = jnp.repeat(jnp.asarray(gammas, jnp.float32), config.num_seeds)
  for j, ratio in enumerate(tqdm.tqdm(ratios, desc="lambda grid", disable=not progress)):
    settings = toy.ToySettings(
        num_real=config.num_real, num_synthetic=loop.num_synthetic(ratio, config.num_real),
        num_generations=config.num_generations, corrector=config.corrector,
        accumulate=config.accumulate, dim=config.dim, bins=config.histogram_bins,
        pool_size=config.rejection_pool)
    start = time.perf_counter()
    compiled = toy.simulate_grid.lower(keys, gamma_lanes, settings=settings).compile()
    compile_s += time.perf_counter() - start
    w2 = np.asarray(compiled(keys, gamma_lanes))
    curves[:, j] = w2.reshape(len(gammas), config.num_seeds, -1)
  return {"w2": curves, "gammas": gammas, "synthetic_ratios": ratios, "compile_s": compile_s}


def summarize(config, result) -> list[dict]:
  """One row per (gamma, lambda) with the final-generation mean, its 95% CI, and the tail mean."""
  rows = []
  w2 = result["w2"]
  num_seeds = w2.shape[2]
  for i, gamma in enumerate(result["gammas"]):
    for j, ratio in enumerate(result["synthetic_ratios"]):
      final = w2[i, j, :, -1]
      mean = float(final.mean())
      if num_seeds > 1:
        half = float(scipy.stats.t.ppf(0.975, num_seeds - 1) * final.std(ddof=1) / np.sqrt(num_seeds))
      else:
        half = float("nan")
      rows.append({
          "gamma": float(gamma),
          "lambda": float(ratio),
          "w2_final_mean": mean,
          "w2_final_ci95": [mean - half, mean + half],
          "w2_last100_mean": float(w2[i, j, :, -config.last_window:].mean()),
          "theory_contraction_factor": float(theory.contraction_factor(
              ratio, gamma, eps=theory.generalization_error(config.num_real, config.dim))),
      })
  return rows


def plot_w2(path: str, config, result) -> None:
  """The paper's figure: W2 vs generation, a line per gamma, a 95% band over seeds."""
  j = int(np.argmin(np.abs(result["synthetic_ratios"] - config.synthetic_ratio)))
  w2 = result["w2"][:, j]
  gens = np.arange(w2.shape[-1])
  fig, ax = plt.subplots(figsize=(7, 4.2))
  colors = plt.cm.viridis(np.linspace(0, 0.95, len(result["gammas"])))
  for gamma, curves, color in zip(result["gammas"], w2, colors):
    mean = curves.mean(0)
    half = 1.96 * curves.std(0) / np.sqrt(max(curves.shape[0], 1))
    ax.plot(gens, mean, color=color, lw=1.2, label=f"$\\gamma$ = {gamma:g}")
    ax.fill_between(gens, mean - half, mean + half, color=color, alpha=0.2, lw=0)
  ax.set_xlabel("generation")
  ax.set_ylabel("Wasserstein-2 distance to $p^*$")
  ax.set_title(f"Gaussian toy: n = {config.num_real}, $\\lambda$ = {result['synthetic_ratios'][j]:g}, "
               f"{w2.shape[1]} seeds, {config.corrector} corrector")
  ax.set_xlim(0, gens[-1])
  ax.set_ylim(bottom=0)
  ax.grid(True, lw=0.3)
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_stability(path: str, config, result) -> None:
  """Mean W2 of the last generations over the lambda x gamma grid, with the theory boundary."""
  w2 = result["w2"][..., -config.last_window:].mean(axis=(2, 3))  # (gammas, lambdas)
  gammas, ratios = result["gammas"], result["synthetic_ratios"]
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  image = ax.imshow(w2.T, origin="lower", aspect="auto", cmap="magma_r")
  ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
  ax.set_yticks(range(len(ratios)), [f"{r:g}" for r in ratios])
  for i in range(len(gammas)):
    for j in range(len(ratios)):
      ax.text(i, j, f"{w2[i, j]:.2f}", ha="center", va="center", fontsize=7,
              color="white" if w2[i, j] > w2.mean() else "black")
  eps = theory.generalization_error(config.num_real, config.dim)
  boundary = theory.stability_boundary(gammas, eps=eps)
  # Boundary in index coordinates of the lambda axis (linear interpolation between ticks).
  ax.plot(range(len(gammas)), np.interp(boundary, ratios, np.arange(len(ratios))), "c--",
          lw=1.5, label="Theorem 4.3 certifies stability below")
  ax.set_xlabel("correction strength $\\gamma$")
  ax.set_ylabel("synthetic ratio $\\lambda$")
  ax.set_title(f"mean W2 over the last {config.last_window} generations")
  fig.colorbar(image, ax=ax, label="W2")
  ax.legend(loc="upper left", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the grid and writes summary.json, curves.npz, w2.png, stability.png, tensorboard/.

  The config and the workdir are checked first (selfconsume.validation, selfconsume.workdir);
  a workdir whose summary.json exists holds the finished run of this config.
  """
  validation.validate_with(config, gaussian_config.get_config, validation.gaussian)
  with workdir_lib.claim(workdir, config):
    if os.path.exists(os.path.join(workdir, "summary.json")):
      return workdir_lib.report_finished(
          workdir, f"{config.num_generations} generations x {config.num_seeds} seeds",
          ("summary.json", "curves.npz", "w2.png", "stability.png"))
    return _run(config, workdir)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  validate(config)
  start = time.perf_counter()
  result = run_grid(config)
  seconds = time.perf_counter() - start
  rows = summarize(config, result)
  np.savez(os.path.join(workdir, "curves.npz"), w2=result["w2"], gammas=result["gammas"],
           synthetic_ratios=result["synthetic_ratios"])
  plot_w2(os.path.join(workdir, "w2.png"), config, result)
  plot_stability(os.path.join(workdir, "stability.png"), config, result)
  with metric_writers.MetricsWriter(workdir) as writer:
    mean_curves = result["w2"].mean(axis=2)
    for generation in range(mean_curves.shape[-1]):
      writer.scalars(generation, {
          f"w2/lambda_{ratio:g}/gamma_{gamma:g}": mean_curves[i, j, generation]
          for i, gamma in enumerate(result["gammas"])
          for j, ratio in enumerate(result["synthetic_ratios"])})
  summary = {
      "experiment": "gaussian",
      "preset": config.get("preset", ""),
      "num_seeds": config.num_seeds,
      "num_real": config.num_real,
      "num_generations": config.num_generations,
      "corrector": config.corrector,
      "seconds": seconds,
      "compile_seconds": result["compile_s"],
      "config": config.to_dict(),
      "rows": rows,
  }
  outputs.write_json(os.path.join(workdir, "summary.json"), summary)
  print(f"gaussian toy: {len(rows)} (gamma, lambda) cells x {config.num_seeds} seeds in "
        f"{seconds:.1f} s -> {workdir}/summary.json")
  return summary
