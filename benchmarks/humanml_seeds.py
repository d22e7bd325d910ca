r"""The paper's motion result over seeds, with the noise it has to beat.

  python -m benchmarks.humanml_seeds                       # default preset, seeds 0, 1, 2
  python -m benchmarks.humanml_seeds --seeds=3,4 --workdir=runs/seeds_34 \
      --override=loop.generations=4 --override=train.generation_steps=300,

Runs (or resumes) `experiments/configs/humanml.py[:preset]` once per seed in WORKDIR/seed_S
(one corpus and one evaluator for all seeds: the seed changes the n-subset and the model, not
the yardstick), then writes to WORKDIR

  seeds.json   per seed and generation the rows; per variant and generation the mean and the
               95% interval over seeds (Student t); the claims at the last generation per seed;
               the noise measurements
  seeds.md     the last-generation table (mean +- 95% interval over seeds) and the claims;
               per seed: FID per generation, the last generation's physical metrics and
               diversity, self_correcting's corrected share per generation
  evaluation_noise.json  the evaluation-noise scores (reused by a rerun on the same checkpoint)
  seeds.png    FID and the physical metrics against generation, mean and interval per variant

and prints its summary as one JSON line last.

  python -m benchmarks.humanml_seeds --pool=docs/humanml_seeds.json,docs/humanml_seeds_34.json \
      --workdir=runs/pooled

pools the seeds of several earlier `seeds.json` (e.g. seeds 0-2 and held-out seeds run later;
each seed once, the same last generation) without running anything: the claims per seed, and
per pair of variants the paired last-generation gaps (self_consuming - baseline,
self_consuming - self_correcting: positive is the paper's way) with their mean, 95% interval
(t), sign count and Wilcoxon signed-rank p-value; `pooled.json` and `pooled.md` in WORKDIR.

The claims (the paper's Figure 4 at lambda = 1), per seed, at the last generation:
self_consuming's FID above baseline's; self_correcting's FID below self_consuming's;
self_correcting's float / penetrate / skate no worse than self_consuming's.

Noise, so that a gap can be judged: the evaluation's (the first seed's last baseline checkpoint
scored again with `--noise_repeats` other generation keys, and with as many other prompt
draws) and the run's (seed to seed at the last generation; generation to generation within a
run: the standard deviation of baseline's FID changes between consecutive generations after
the first).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from scipy import stats

from experiments import humanml
from experiments.configs import humanml as humanml_config
from selfconsume import loop_plots
from selfconsume import outputs
from selfconsume import sweep
from selfconsume import workdir as workdir_lib
from selfconsume.humanml import generation as generation_lib

VARIANTS = ("baseline", "self_consuming", "self_correcting")
METRICS = ("fid", "r_precision_top3", "matching", "diversity", "float_mm", "penetrate_mm",
           "skate", "tracking_error_m", "fall_rate", "resets", "imitated_fraction",
           "corrected_fraction", "dropped_fraction")
FIGURE_METRICS = ("fid", "r_precision_top3", "float_mm", "penetrate_mm", "skate",
                  "tracking_error_m")
PHYSICAL = ("float_mm", "penetrate_mm", "skate")


def apply_override(config, assignment: str) -> None:
  """'section.field=value' with the value parsed like the existing field (tuples: a,b)."""
  name, value = assignment.split("=", 1)
  *path, field = name.split(".")
  node = config
  for part in path:
    node = node[part]
  old = node[field]
  if isinstance(old, tuple):
    kind = type(old[0]) if old else str
    node[field] = tuple(kind(v) for v in value.split(",") if v)
  elif isinstance(old, bool):
    node[field] = value.lower() in ("1", "true", "yes")
  else:
    node[field] = type(old)(value)


def motion_config(preset: str, seed: int, corpus_dir: str, overrides: Sequence[str]) -> Any:
  """The motion config of a run: the preset, its seed, its corpus directory ('' keeps the
  config's) and `apply_override` assignments, in the order given."""
  config = humanml_config.get_config(preset)
  config.seed = seed
  if corpus_dir:
    config.data.corpus_dir = corpus_dir
  for assignment in overrides:
    apply_override(config, assignment)
  return config


def t_interval(values: Sequence[float]) -> tuple[float, float]:
  """Mean and 95% half-width with Student's t (n - 1 degrees of freedom; 0 for one value)."""
  x = np.asarray(values, np.float64)
  if x.size < 2:
    return float(x.mean()), 0.0
  return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def seed_rows(workdir: str, n: int, ratio: float) -> dict[str, dict[int, dict[str, float]]]:
  """variant -> generation -> flat metrics of one run's metrics.jsonl (generation 0 shared)."""
  out: dict[str, dict[int, dict[str, float]]] = {}
  for row in outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl")):
    if row["n"] != n or row["variant"] not in VARIANTS:
      continue
    if row["variant"] != "baseline" and row["lambda"] != ratio:
      continue
    out.setdefault(row["variant"], {})[int(row["generation"])] = sweep.flat_metrics(row)
  return out


def aggregate(per_seed: Mapping[int, Mapping[str, Mapping[int, Mapping[str, float]]]],
              n: int, ratio: float) -> list[dict[str, Any]]:
  """Rows (variant, generation) with each metric's mean over seeds and its `_ci95`."""
  rows = []
  for variant in VARIANTS:
    generations = sorted(set.intersection(*(set(s.get(variant, {})) for s in per_seed.values())))
    for g in generations:
      row: dict[str, Any] = {"variant": variant, "n": n, "generation": g,
                             "lambda": 0.0 if variant == "baseline" else ratio,
                             "seeds": len(per_seed)}
      for metric in METRICS:
        values = [s[variant][g][metric] for s in per_seed.values()
                  if s[variant][g].get(metric) is not None]
        if len(values) == len(per_seed):
          row[metric], row[f"{metric}_ci95"] = t_interval(values)
      rows.append(row)
  return rows


def claims(last: Mapping[str, Mapping[str, float]]) -> dict[str, bool]:
  """The paper's claims at the last generation of one seed, each where its variants ran
  (a run restricted by `--override=loop.variants=...` has only some of them)."""
  out = {}
  if "baseline" in last and "self_consuming" in last:
    out["consuming_fid_above_baseline"] = last["self_consuming"]["fid"] > last["baseline"]["fid"]
  if "self_consuming" in last and "self_correcting" in last:
    cons, corr = last["self_consuming"], last["self_correcting"]
    out["correcting_fid_below_consuming"] = corr["fid"] < cons["fid"]
    for metric in PHYSICAL:
      out[f"correcting_{metric}_no_worse"] = corr[metric] <= cons[metric]
  return out


def claims_held(per_seed_claims: Mapping[int, Mapping[str, bool]]) -> dict[str, int]:
  """Per claim, the number of seeds in which it held (of those where it was tested)."""
  held: dict[str, int] = {}
  for seed_claims in per_seed_claims.values():
    for name, value in seed_claims.items():
      held[name] = held.get(name, 0) + int(value)
  return held


def evaluation_noise(config, workdir: str, n: int, generation: int, repeats: int
                     ) -> dict[str, Any]:
  """One checkpoint (baseline, `generation`) scored with other keys and other prompt draws."""
  results: dict[str, list[float]] = {"keys": [], "prompt_sets": []}
  directory = sweep.generation_dir(sweep.run_dir(workdir, n, 0.0, "baseline"), generation)
  for kind in results:
    for r in range(repeats):
      run_config = config.copy_and_resolve_references()
      if kind == "prompt_sets":
        run_config.eval.prompt_seed = int(config.eval.prompt_seed) + 1 + r
      components = generation_lib.build_components(run_config, workdir)
      state = components.restore(os.path.join(directory, "state"),
                                 components.init(jax.random.PRNGKey(0)))
      key = (jax.random.fold_in(sweep.evaluation_key(int(config.seed)), 1 + r)
             if kind == "keys" else sweep.evaluation_key(int(config.seed)))
      results[kind].append(float(components.evaluate(state, key)["fid"]))
  summary = {"checkpoint": f"baseline generation {generation}"}
  for kind, values in results.items():
    summary[kind] = {"fid": values, "sd": float(np.std(values, ddof=1)),
                     "range": float(np.ptp(values))}
  return summary


def cached_evaluation_noise(config, benchmark_dir: str, seed_dir: str, n: int, generation: int,
                            repeats: int) -> dict[str, Any]:
  """`evaluation_noise`, kept in BENCHMARK_DIR/evaluation_noise.json under the checkpoint's
  identity (the seed run's config fingerprint, n, generation, repeats): rerunning the
  benchmark over finished seeds (a new table layout, one more seed) does not score the same
  checkpoint again."""
  path = os.path.join(benchmark_dir, "evaluation_noise.json")
  identity = workdir_lib.read_identity(seed_dir) or {}
  key = {"seed_dir": os.path.basename(os.path.normpath(seed_dir)),
         "config_fingerprint": identity.get("config_fingerprint"), "n": n,
         "generation": generation, "repeats": repeats}
  if os.path.exists(path):
    stored = outputs.read_json(path)
    if stored.get("key") == key:
      return stored["noise"]
  noise = evaluation_noise(config, seed_dir, n, generation, repeats)
  outputs.write_json(path, {"key": key, "noise": noise})
  return noise


def run_noise(per_seed, last_generation: int) -> dict[str, Any]:
  """Seed to seed (last generation) and generation to generation (baseline) spreads."""
  seed_sd = {v: float(np.std([s[v][last_generation]["fid"] for s in per_seed.values()], ddof=1))
             for v in VARIANTS if len(per_seed) > 1 and all(v in s for s in per_seed.values())}
  steps = []
  for s in per_seed.values():
    fids = [s["baseline"][g]["fid"] for g in sorted(s.get("baseline", {})) if g >= 1]
    steps.extend(np.diff(fids))
  return {"seed_to_seed_fid_sd": seed_sd,
          "baseline_generation_to_generation_fid_sd": (float(np.std(steps, ddof=1))
                                                       if len(steps) > 1 else None)}


def markdown(rows: Sequence[Mapping[str, Any]], held: Mapping[str, int], seeds: Sequence[int],
             last_generation: int) -> str:
  """The last-generation table and the claims, as in the README."""
  columns = ("fid", "r_precision_top3", "float_mm", "penetrate_mm", "skate",
             "tracking_error_m", "imitated_fraction")
  lines = [f"Seeds {', '.join(map(str, seeds))}; mean +- 95% interval over seeds (t)"
           " where there are several.", "",
           "| | generation | " + " | ".join(columns) + " |",
           "| --- | --- |" + " --- |" * len(columns)]
  # Generation 0 is shared by every variant: one row, from the first variant that ran.
  first = next((row["variant"] for row in rows), None)
  for row in rows:
    if row["generation"] not in (0, last_generation) or (
        row["generation"] == 0 and row["variant"] != first):
      continue
    name = "generation 0" if row["generation"] == 0 else row["variant"]
    # One seed has no interval over seeds: its value alone.
    cells = ["" if c not in row else f"{row[c]:.3f}" if len(seeds) < 2
             else f"{row[c]:.3f} +- {row[c + '_ci95']:.3f}" for c in columns]
    lines.append(f"| {name} | {row['generation']} | " + " | ".join(cells) + " |")
  lines += ["", "Claims held (of %d seeds): " % len(seeds)
            + ", ".join(f"{k} {v}" for k, v in held.items())]
  return "\n".join(lines) + "\n"


def per_seed_markdown(per_seed: Mapping[int, Mapping[str, Mapping[int, Mapping[str, float]]]],
                      last_generation: int) -> str:
  """Per seed and variant: FID per generation (generation 0 once per seed, it is shared), the
  last generation's physical metrics and diversity, and for self_correcting the share of its
  synthetic motions returned corrected, per generation."""
  generations = range(last_generation + 1)
  last = ("float_mm", "penetrate_mm", "skate", "diversity")
  lines = ["| seed | variant | " + " | ".join(f"fid gen {g}" for g in generations) + " | "
           + " | ".join(last) + " | corrected, gen 1-%d |" % last_generation,
           "| --- | --- |" + " --- |" * (len(generations) + len(last) + 1)]

  def cell(curve, g, metric, digits):
    value = curve.get(g, {}).get(metric)
    return "" if value is None else f"{value:.{digits}f}"

  for seed, by_variant in per_seed.items():
    ran = [v for v in VARIANTS if v in by_variant]
    for variant in ran:
      curve = by_variant[variant]
      fids = [cell(curve, g, "fid", 3) if g > 0 or variant == ran[0] else ""
              for g in generations]
      physical = [cell(curve, last_generation, m, 2 if m in ("skate", "diversity") else 1)
                  for m in last]
      shares = [cell(curve, g, "corrected_fraction", 2) for g in generations if g > 0]
      corrected = ", ".join(shares) if any(shares) else ""
      lines.append(f"| {seed} | {variant} | " + " | ".join(fids + physical) + f" | {corrected} |")
  return "\n".join(lines) + "\n"


# (first, second, metrics): gaps first - second. The paper's way is a positive gap, except
# for self_correcting - baseline: the drift correction leaves, near zero in the paper.
PAIRS = (("self_consuming", "baseline", ("fid",)),
         ("self_consuming", "self_correcting", ("fid",) + PHYSICAL),
         ("self_correcting", "baseline", ("fid",)))


def read_last_generations(paths: Sequence[str]) -> tuple[dict[int, dict[str, dict[str, float]]],
                                                          int]:
  """seed -> variant -> last-generation metrics from several `seeds.json`, each seed once."""
  last_generation, per_seed = None, {}
  for path in paths:
    result = outputs.read_json(path)
    generation = int(result["generations"])
    if last_generation is not None and generation != last_generation:
      raise SystemExit(f"{path}: last generation {generation}, the files before it "
                       f"{last_generation}; pool runs of the same length")
    last_generation = generation
    for seed, curves in result["per_seed"].items():
      if int(seed) in per_seed:
        raise SystemExit(f"{path}: seed {seed} is also in an earlier file; pool each seed once")
      per_seed[int(seed)] = {v: curve[str(generation)] for v, curve in curves.items()
                             if str(generation) in curve}
  if last_generation is None:
    raise SystemExit("--pool needs at least one seeds.json")
  return per_seed, last_generation


def paired_gaps(per_seed: Mapping[int, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
  """Per pair (a, b) and metric, over the seeds where both ran: gap a - b per seed, its mean,
  95% interval (t), how many seeds are positive, and the Wilcoxon signed-rank p-value."""
  out = {}
  for a, b, metrics in PAIRS:
    for metric in metrics:
      seeds = sorted(s for s, last in per_seed.items() if a in last and b in last)
      gaps = [per_seed[s][a][metric] - per_seed[s][b][metric] for s in seeds]
      if not gaps:
        continue
      mean, half = t_interval(gaps)
      out[f"{a}-{b}:{metric}"] = {
          "seeds": seeds, "gaps": gaps, "mean": mean, "ci95": half,
          "positive": int(sum(g > 0 for g in gaps)),
          "wilcoxon_p": (float(stats.wilcoxon(gaps).pvalue) if len(gaps) > 1 and any(gaps)
                         else None)}
  return out


def pooled_markdown(gaps: Mapping[str, Mapping[str, Any]], held: Mapping[str, int],
                    seeds: Sequence[int]) -> str:
  """The pooled gaps as a table, and how many seeds held each claim."""
  lines = [f"Seeds {', '.join(map(str, seeds))} pooled; last generation; gap = first - second "
           "(positive: the paper's way; self_correcting - baseline: the drift correction "
           "leaves, near zero in the paper).", "",
           "| gap | seeds | mean +- 95% (t) | positive | Wilcoxon p |",
           "| --- | --- | --- | --- | --- |"]
  for name, g in gaps.items():
    p = "" if g["wilcoxon_p"] is None else f"{g['wilcoxon_p']:.3f}"
    lines.append(f"| {name} | {len(g['seeds'])} | {g['mean']:.3f} +- {g['ci95']:.3f} | "
                 f"{g['positive']} of {len(g['seeds'])} | {p} |")
  lines += ["", "Claims held: " + ", ".join(f"{k} {v}" for k, v in held.items())]
  return "\n".join(lines) + "\n"


def pool(paths: Sequence[str], workdir: str) -> dict[str, Any]:
  """The claims and paired gaps over the seeds of several seeds.json; writes pooled.*."""
  per_seed, last_generation = read_last_generations(paths)
  per_seed_claims = {s: claims(last) for s, last in per_seed.items()}
  held = claims_held(per_seed_claims)
  tested = {name: sum(name in c for c in per_seed_claims.values()) for name in held}
  gaps = paired_gaps(per_seed)
  result = {"benchmark": "humanml_seeds_pooled", "files": list(paths),
            "seeds": sorted(per_seed), "generations": last_generation,
            "claims_held_in_seeds": held, "claims_tested_in_seeds": tested,
            "claims_per_seed": {str(s): c for s, c in sorted(per_seed_claims.items())},
            "gaps": gaps}
  os.makedirs(workdir, exist_ok=True)
  outputs.write_json(os.path.join(workdir, "pooled.json"), result)
  outputs.write_text_atomic(os.path.join(workdir, "pooled.md"),
                            pooled_markdown(gaps, {k: f"{v} of {tested[k]}"
                                                   for k, v in held.items()}, sorted(per_seed)))
  return result


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--workdir", default="runs/humanml_seeds")
  parser.add_argument("--override", action="append", default=[],
                      help="config assignment section.field=value (repeatable)")
  parser.add_argument("--noise_repeats", type=int, default=4,
                      help="re-scorings per kind for the evaluation noise (0: skip)")
  parser.add_argument("--pool", default="",
                      help="comma-separated seeds.json files to pool instead of running")
  args = parser.parse_args(argv)
  if args.pool:
    print(json.dumps(pool([p for p in args.pool.split(",") if p], args.workdir)))
    return
  seeds = [int(s) for s in args.seeds.split(",") if s]
  started = time.time()
  per_seed, seconds, configs = {}, {}, {}
  for seed in seeds:
    config = motion_config(args.preset, seed, "", args.override)
    config.data.corpus_dir = config.data.corpus_dir or os.path.join(args.workdir, "corpus")
    workdir = os.path.join(args.workdir, f"seed_{seed}")
    start = time.time()
    humanml.run(config, workdir)
    seconds[seed] = time.time() - start
    n, ratio = int(config.loop.sizes[0]), float(config.loop.lambdas[-1])
    per_seed[seed] = seed_rows(workdir, n, ratio)
    configs[seed] = config
    print(json.dumps({"seed": seed, "minutes": round(seconds[seed] / 60, 1)}), flush=True)

  last_generation = int(configs[seeds[0]].loop.generations)
  rows = aggregate(per_seed, n, ratio)
  per_seed_claims = {s: claims({v: r[v][last_generation] for v in VARIANTS if v in r})
                     for s, r in per_seed.items()}
  held = claims_held(per_seed_claims)
  noise: dict[str, Any] = run_noise(per_seed, last_generation)
  if args.noise_repeats > 1 and "baseline" in per_seed[seeds[0]]:
    noise["evaluation"] = cached_evaluation_noise(
        configs[seeds[0]], args.workdir, os.path.join(args.workdir, f"seed_{seeds[0]}"), n,
        last_generation, args.noise_repeats)
  floor_path = os.path.join(args.workdir, f"seed_{seeds[0]}", "correction_floor.json")
  floor = outputs.read_json(floor_path) if os.path.exists(floor_path) else None
  result = {"benchmark": "humanml_seeds", "preset": args.preset, "overrides": args.override,
            "seeds": seeds, "n": n, "lambda": ratio, "generations": last_generation,
            "claims_held_in_seeds": held,
            "claims_per_seed": {str(s): c for s, c in per_seed_claims.items()},
            "last_generation": {r["variant"]: {k: v for k, v in r.items() if k != "variant"}
                                for r in rows if r["generation"] == last_generation},
            "generation0": next((r for r in rows if r["generation"] == 0), None),
            "noise": noise, "correction_floor": floor,
            "minutes_per_seed": {str(s): round(t / 60, 1) for s, t in seconds.items()},
            "minutes": round((time.time() - started) / 60, 1)}
  os.makedirs(args.workdir, exist_ok=True)
  outputs.write_json(os.path.join(args.workdir, "seeds.json"),
                     dict(result, rows=rows,
                          per_seed={str(s): r for s, r in per_seed.items()}))
  outputs.write_text_atomic(os.path.join(args.workdir, "seeds.md"),
                            markdown(rows, held, seeds, last_generation) + "\n"
                            + per_seed_markdown(per_seed, last_generation))
  references = loop_plots.reference_lines(
      [{"real_fid": curve[last_generation].get("real_fid")}
       for curve in per_seed[seeds[0]].values()], floor)
  figure = loop_plots.setting_figure(
      rows, n, ratio, FIGURE_METRICS, references,
      title=f"n = {n}, lambda = {ratio:g}: mean and 95% interval over seeds {seeds}")
  if figure is not None:
    figure.savefig(os.path.join(args.workdir, "seeds.png"), dpi=110)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
