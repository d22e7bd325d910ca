r"""Gaussian toy: our jitted grid against plain NumPy loops of the same protocol.

  python -m benchmarks.gaussian [--generations 500] [--seeds 100]

Runs the paper's full grid (8 gammas x 500 generations, n = 50, lambda = 0.5, histogram
corrector, accumulated synthetic sets) for one seed three ways, in the same process:

* ours: `selfconsume.gaussian.toy.simulate_grid` (compile timed apart);
* numpy_s: a plain NumPy loop written like the paper's code — one candidate at a time in the
  rejection sampler, the training set re-concatenated and refitted every generation;
* numpy_vectorized_s: the same loop with the rejection sampler vectorised over candidates.

Then it times 100 seeds of the grid with ours. Last line, JSON:
{"speedup", "speedup_vs_vectorized", "ours_s", "compile_s", "numpy_s", "numpy_vectorized_s",
 "seeds_per_s", "seeds_100_s"}.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from selfconsume.gaussian import toy

GAMMAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 5.0)


def _normal_pdf(x: np.ndarray) -> np.ndarray:
  return np.exp(-0.5 * np.sum(x**2, axis=-1)) / (2 * np.pi)


def _correct(rng, data, t, vectorized, bins=10):
  """Rejection sampling from (1-t) hist(data) + t N(0, I), proposal N(0, I) (paper's M)."""
  density, xedges, yedges = np.histogram2d(data[:, 0], data[:, 1], bins=bins, density=True)
  dx, dy = xedges[1] - xedges[0], yedges[1] - yedges[0]
  envelope = ((1 - t) * density.max() + t * _normal_pdf(np.zeros(2))) / _normal_pdf(np.zeros(2))
  out = np.zeros_like(data)
  count = 0
  while count < len(data):
    if vectorized:
      candidates = rng.standard_normal((256, 2))
    else:
      candidates = rng.standard_normal((1, 2))
    ix = np.floor((candidates[:, 0] - xedges[0]) / dx).astype(int)
    iy = np.floor((candidates[:, 1] - yedges[0]) / dy).astype(int)
    inside = (ix >= 0) & (ix < bins) & (iy >= 0) & (iy < bins)
    empirical = np.where(inside, density[np.clip(ix, 0, bins - 1), np.clip(iy, 0, bins - 1)], 0.0)
    target = (1 - t) * empirical + t * _normal_pdf(candidates)
    accept = rng.uniform(size=len(candidates)) < target / (envelope * _normal_pdf(candidates))
    taken = candidates[accept][:len(data) - count]
    out[count:count + len(taken)] = taken
    count += len(taken)
  return out


def numpy_loop(seed: int, generations: int, vectorized: bool, n: int = 50, ratio: float = 0.5):
  """The protocol as a plain Python/NumPy loop; returns W2 curves (gammas, generations + 1)."""
  curves = []
  for gamma in GAMMAS:
    rng = np.random.default_rng(seed)
    t = gamma / (1 + gamma)
    real = rng.standard_normal((n, 2))
    m = int(math.floor(ratio * n + 1e-9))
    mean, cov = real.mean(0), np.cov(real.T, bias=True)
    w2 = [_w2_to_standard(mean, cov)]
    sets = []
    for _ in range(generations):
      synthetic = rng.multivariate_normal(mean, cov, m)
      sets.append(_correct(rng, synthetic, t, vectorized))
      kept = [s[:int((g + 1) / len(sets) * m)] for g, s in enumerate(sets)]
      data = np.concatenate([real] + kept)
      mean, cov = data.mean(0), np.cov(data.T, bias=True) + 1e-6 * np.eye(2)
      w2.append(_w2_to_standard(mean, cov))
    curves.append(w2)
  return np.asarray(curves)


def _w2_to_standard(mean, cov):
  values = np.linalg.eigvalsh(cov)
  return math.sqrt(float(mean @ mean + np.sum((np.sqrt(np.clip(values, 0, None)) - 1) ** 2)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--generations", type=int, default=500)
  parser.add_argument("--seeds", type=int, default=100)
  args = parser.parse_args()

  settings = toy.ToySettings(num_real=50, num_synthetic=25, num_generations=args.generations)
  gammas = jnp.asarray(GAMMAS, jnp.float32)

  def lanes(num_seeds):
    keys = jnp.tile(jax.random.split(jax.random.key(0), num_seeds), len(GAMMAS))
    return keys, jnp.repeat(gammas, num_seeds)

  keys, gamma_lanes = lanes(1)
  start = time.perf_counter()
  compiled = toy.simulate_grid.lower(keys, gamma_lanes, settings=settings).compile()
  compile_s = time.perf_counter() - start
  compiled(keys, gamma_lanes).block_until_ready()
  ours = []
  for _ in range(5):
    start = time.perf_counter()
    compiled(keys, gamma_lanes).block_until_ready()
    ours.append(time.perf_counter() - start)
  ours_s = float(np.median(ours))

  start = time.perf_counter()
  numpy_curves = numpy_loop(0, args.generations, vectorized=False)
  numpy_s = time.perf_counter() - start
  start = time.perf_counter()
  numpy_loop(0, args.generations, vectorized=True)
  numpy_vectorized_s = time.perf_counter() - start

  keys, gamma_lanes = lanes(args.seeds)
  many = toy.simulate_grid.lower(keys, gamma_lanes, settings=settings).compile()
  start = time.perf_counter()
  ours_curves = np.asarray(many(keys, gamma_lanes))
  seeds_s = time.perf_counter() - start

  # Same protocol, different random streams: the tails must agree statistically.
  tail = slice(-min(100, args.generations), None)
  ours_tail = ours_curves.reshape(len(GAMMAS), args.seeds, -1)[:, :, tail].mean(axis=(1, 2))
  print("gamma  ours(mean over seeds)  numpy(1 seed)  [W2, last generations]")
  for gamma, a, b in zip(GAMMAS, ours_tail, numpy_curves[:, tail].mean(1)):
    print(f"{gamma:5g}  {a:21.3f}  {b:13.3f}")
  print(json.dumps({
      "speedup": numpy_s / ours_s,
      "speedup_vs_vectorized": numpy_vectorized_s / ours_s,
      "ours_s": ours_s,
      "compile_s": compile_s,
      "numpy_s": numpy_s,
      "numpy_vectorized_s": numpy_vectorized_s,
      "seeds_per_s": args.seeds / seeds_s,
      "seeds_100_s": seeds_s * 100 / args.seeds,
  }))


if __name__ == "__main__":
  main()
