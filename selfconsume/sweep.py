"""The generation sweep: every (n, lambda, variant) run of a self-consuming experiment,
generation after generation, resumable, with one metrics row per generation.

An experiment hands in its `Components` (its model, data, corrector and evaluator as plain
functions); `run_loop` does everything around them, the same way for every experiment:

  - keys: every generation's PRNG key is derived from (seed, n, lambda, variant, generation),
    never carried from one generation to the next, so a resumed run draws exactly what an
    uninterrupted run draws; one evaluation key judges every generation on the same noise;
  - run directories and resume: a generation counts as finished once its checkpoint and then
    its row.json are on disk (both atomic); a rerun continues every run from its last
    finished generation; a fit run from the host (generation 0; every generation of
    components without a compiled `generation`) resumes from its own checkpoints
    (gen_XXX/fit/), a compiled generation is rerun from its start;
  - rows: metrics.jsonl (one row per generation, generation 0 repeated at the start of every
    curve), summary.json (first/last per run and the paper's comparisons), TensorBoard
    (tags METRIC/VARIANT, the generation as step), figures and report.html.

For every size n the generation-0 model is trained once and shared by all variants and
lambdas, as in the paper. Baseline does not depend on lambda (it never samples), so it runs
once per n and its rows carry lambda = 0.

Workdir layout:
  metrics.jsonl, summary.json, config.json
  correction_floor.json   the real test motions scored after correction: how far correction
                          alone moves data in the evaluator's eyes
  checkpoints/n64/gen_000/{state/, row.json}                     shared generation 0
  checkpoints/n64/baseline/gen_001/...                           baseline (lambda = 0)
  checkpoints/n64/lambda1/self_correcting/gen_001/...            the other variants
  plots/n64_lambda1.png   videos/<run>/...
  tensorboard/n64_lambda1/  tags METRIC/VARIANT against the generation; fit_loss/VARIANT
  report.html             tables, figures, videos, config (selfconsume/report.py)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from selfconsume import loop
from selfconsume import loop_plots
from selfconsume import metric_writers
from selfconsume import outputs
from selfconsume import parallel
from selfconsume import report
from selfconsume.errors import CheckpointError
from selfconsume.errors import ConfigError
from selfconsume.errors import NonFiniteError

Row = dict[str, Any]

# The metrics every row carries (None where a variant has no such value).
ROW_METRICS = ("fid", "r_precision", "matching", "diversity", "multimodality", "float_mm",
               "penetrate_mm", "skate", "tracking_error_m", "fall_rate", "resets",
               "imitated_fraction", "train_loss", "seconds")
# The metrics that get a plot and a place in summary.json; lower is better unless listed.
PLOTTED_METRICS = ("fid", "r_precision_top3", "matching", "diversity", "multimodality",
                   "float_mm", "penetrate_mm", "skate", "tracking_error_m", "fall_rate",
                   "resets", "imitated_fraction")
HIGHER_IS_BETTER = ("r_precision_top1", "r_precision_top2", "r_precision_top3",
                    "imitated_fraction")
# Subdirectory of a generation's directory where a long fit checkpoints until it is done.
FIT_CHECKPOINTS = "fit"


@dataclasses.dataclass(frozen=True)
class Components:
  """The model-, data- and simulator-specific pieces the loop driver calls.

  Built by `selfconsume.humanml.generation.build_components` for the motion experiment;
  tests may hand in small stand-ins. Every function is deterministic given its key.

  Attributes:
    real_buffer: n -> loop.Buffer of the n real training motions.
    synthetic_buffer: (n, lambda) -> empty loop.Buffer with floor(lambda * n) slots.
    init: key -> an untrained train state (also the template checkpoints restore into).
    fit: (train state, buffer, key, steps) -> (train state, metrics with 'train_loss');
      generation 0 is `steps = gen0_steps` from an init, later generations fine-tune.
    sample: (train state, empty synthetic buffer, key, n, lambda) -> synthetic buffer
      (floor(lambda * n) motions for prompts drawn from the n real ones).
    correct: (key, synthetic buffer) -> (corrected buffer, metrics).
    evaluate: (train state, key) -> dict of metric values.
    save: (directory, train state) -> None, writes a complete checkpoint or nothing.
    restore: (directory, template train state) -> train state.
    render_prompts: optional (train state, key, path) -> None: fixed prompts as a video.
    render_correction: optional (before, after buffers, path) -> None.
    correction_floor: optional key -> metrics of the real test motions after physics
      correction: what correction alone costs in the evaluator's eyes (FID etc.), the level
      self_correcting cannot go below whatever the loop does.
    resumable_fit: `fit` also takes keywords checkpoint_dir (where a long fit checkpoints
      every config.train.checkpoint_every steps and resumes from) and log ((steps done,
      loss) -> None, called every config.train.log_every steps).
    score_synthetic: optional synthetic buffer -> metrics of the motions a generation
      trained on (after correction, where it corrects), written to the row: what the
      corrector did to the loop's data, next to what the model then generates.
    generation: optional (n, lambda, variant) -> a compiled generation
      (`loop.make_generation`: loop state -> (state, metrics, samples)); a metric
      'fit_losses' (calls, steps per call) is logged as the fit's loss curve. Without it
      each generation calls sample, correct and fit from the host.
  """
  real_buffer: Callable[[int], loop.Buffer]
  synthetic_buffer: Callable[[int, float], loop.Buffer]
  init: Callable[[jax.Array], Any]
  fit: Callable[[Any, loop.Buffer, jax.Array, int], tuple[Any, Mapping[str, Any]]]
  sample: Callable[[Any, loop.Buffer, jax.Array, int, float], loop.Buffer]
  correct: Callable[[jax.Array, loop.Buffer], tuple[loop.Buffer, Mapping[str, Any]]]
  evaluate: Callable[[Any, jax.Array], Mapping[str, Any]]
  save: Callable[[str, Any], None]
  restore: Callable[[str, Any], Any]
  render_prompts: Callable[[Any, jax.Array, str], None] | None = None
  render_correction: Callable[[loop.Buffer, loop.Buffer, str], None] | None = None
  correction_floor: Callable[[jax.Array], Mapping[str, Any]] | None = None
  close: Callable[[], None] | None = None
  score_synthetic: Callable[[loop.Buffer], Mapping[str, Any]] | None = None
  resumable_fit: bool = False
  generation: Callable[[int, float, str], loop.GenerationFn] | None = None


# ----------------------------------------------------------------------------- keys and paths


def _tag(value: float) -> str:
  return f"{value:g}"


def generation_key(seed: int, n: int, synthetic_ratio: float, variant: str,
                   generation: int) -> jax.Array:
  """The PRNG key of one generation, a function of where it sits in the sweep only.

  Deriving it from (seed, n, lambda, variant, generation), instead of carrying a key from
  one generation to the next, makes a resumed run draw exactly what an uninterrupted run
  draws.
  """
  key = jax.random.PRNGKey(seed)
  key = jax.random.fold_in(key, n)
  key = jax.random.fold_in(key, int(round(synthetic_ratio * 10000)))
  key = jax.random.fold_in(key, loop.VARIANTS.index(variant) if variant in loop.VARIANTS else 99)
  return jax.random.fold_in(key, generation)


def evaluation_key(seed: int) -> jax.Array:
  """One key for every evaluation: all generations are judged on the same noise."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)


def run_dir(workdir: str, n: int, synthetic_ratio: float | None, variant: str | None) -> str:
  """checkpoints/n{n}[/baseline | /lambda{l}/{variant}]: one run of the sweep."""
  base = os.path.join(workdir, "checkpoints", f"n{n}")
  if variant is None:
    return base
  if variant == "baseline":
    return os.path.join(base, "baseline")
  return os.path.join(base, f"lambda{_tag(synthetic_ratio)}", variant)


def generation_dir(directory: str, generation: int) -> str:
  return os.path.join(directory, f"gen_{generation:03d}")


def finished_generations(directory: str) -> list[int]:
  """Generations whose row.json (written after the checkpoint) exists, ascending."""
  if not os.path.isdir(directory):
    return []
  found = []
  for name in os.listdir(directory):
    if name.startswith("gen_") and os.path.exists(os.path.join(directory, name, "row.json")):
      try:
        found.append(int(name[4:]))
      except ValueError:
        continue
  return sorted(found)


# ----------------------------------------------------------------------------- rows


def _scalar(value: Any) -> Any:
  if value is None:
    return None
  if isinstance(value, (list, tuple)):
    return [_scalar(v) for v in value]
  array = np.asarray(value)
  if array.ndim > 0:
    return [float(v) for v in array.reshape(-1)]
  return float(array)


def make_row(*, n: int, synthetic_ratio: float, variant: str, generation: int, seed: int,
             evaluation: Mapping[str, Any], generation_metrics: Mapping[str, Any],
             seconds: float) -> Row:
  """One metrics.jsonl row: the evaluation plus the loop's own numbers for a generation."""
  row: Row = {"variant": variant, "lambda": float(synthetic_ratio), "n": int(n),
              "generation": int(generation), "seed": int(seed)}
  for name in ROW_METRICS:
    row[name] = None
  for name, value in evaluation.items():
    row[name] = _scalar(value)
  for name, value in generation_metrics.items():
    row[name] = _scalar(value)
  row["seconds"] = float(seconds)
  loss = row.get("train_loss")
  if isinstance(loss, float) and not np.isfinite(loss):
    raise NonFiniteError(f"generation {generation} of {variant} (n={n}, "
                         f"lambda={synthetic_ratio}) has train_loss = {loss}")
  return row


def flat_metrics(row: Mapping[str, Any]) -> dict[str, float]:
  """Scalar view of a row: r_precision [top1, top2, top3] -> r_precision_top1.. ."""
  flat = {}
  for name, value in row.items():
    if name == "r_precision" and isinstance(value, (list, tuple)):
      for k, v in enumerate(value):
        flat[f"r_precision_top{k + 1}"] = v
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      flat[name] = float(value)
  return flat


def collect_rows(workdir: str, config: ml_collections.ConfigDict) -> list[Row]:
  """All finished rows of the sweep, generation 0 repeated at the start of every curve."""
  rows = []
  for n in config.loop.sizes:
    gen0_path = os.path.join(generation_dir(run_dir(workdir, n, None, None), 0), "row.json")
    gen0 = outputs.read_json(gen0_path) if os.path.exists(gen0_path) else None
    for variant, ratio in runs(config):
      if gen0 is not None:
        rows.append(dict(gen0, variant=variant, **{"lambda": ratio}))
      directory = run_dir(workdir, n, ratio, variant)
      for g in finished_generations(directory):
        if g > 0:
          rows.append(outputs.read_json(os.path.join(generation_dir(directory, g), "row.json")))
  return rows


def runs(config: ml_collections.ConfigDict) -> list[tuple[str, float]]:
  """(variant, lambda) pairs of the sweep; baseline once, with lambda 0."""
  runs = []
  for variant in config.loop.variants:
    if variant == "baseline":
      runs.append((variant, 0.0))
    else:
      runs.extend((variant, float(ratio)) for ratio in config.loop.lambdas)
  return runs


def summarize(rows: Sequence[Row], config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Generation 0 and the last generation of every run, and the paper's comparisons."""
  summary: dict[str, Any] = {"runs": {}, "comparisons": {}}
  by_run: dict[tuple[int, float, str], list[Row]] = {}
  for row in rows:
    by_run.setdefault((row["n"], row["lambda"], row["variant"]), []).append(row)
  for (n, ratio, variant), run_rows in sorted(by_run.items(), key=lambda kv: str(kv[0])):
    run_rows = sorted(run_rows, key=lambda r: r["generation"])
    summary["runs"][f"n{n}/lambda{_tag(ratio)}/{variant}"] = {
        "generations": run_rows[-1]["generation"],
        "first": flat_metrics(run_rows[0]), "last": flat_metrics(run_rows[-1]),
        "seconds": float(sum(r.get("seconds") or 0.0 for r in run_rows))}
  for n in config.loop.sizes:
    for ratio in config.loop.lambdas:
      last = {}
      for variant, run_ratio in (("baseline", 0.0), ("self_consuming", float(ratio)),
                                 ("self_correcting", float(ratio))):
        entry = summary["runs"].get(f"n{n}/lambda{_tag(run_ratio)}/{variant}")
        if entry is not None:
          last[variant] = entry
      if "self_consuming" not in last or "self_correcting" not in last:
        continue
      cons, corr = last["self_consuming"], last["self_correcting"]
      compare: dict[str, Any] = {}
      for metric in ("fid", "float_mm", "penetrate_mm", "skate", "r_precision_top3",
                     "matching"):
        a, b = corr["last"].get(metric), cons["last"].get(metric)
        if a is None or b is None:
          continue
        better = a > b if metric in HIGHER_IS_BETTER else a < b
        compare[f"self_correcting_better_{metric}"] = bool(better)
      fid0, fid_cons = cons["first"].get("fid"), cons["last"].get("fid")
      if fid0 is not None and fid_cons is not None:
        compare["self_consuming_fid_change"] = fid_cons - fid0
      if "baseline" in last and corr["last"].get("fid") is not None:
        compare["self_correcting_minus_baseline_fid"] = (
            corr["last"]["fid"] - last["baseline"]["last"].get("fid", float("nan")))
      summary["comparisons"][f"n{n}/lambda{_tag(ratio)}"] = compare
  return summary


# ----------------------------------------------------------------------------- the driver


def _validate(config: ml_collections.ConfigDict) -> None:
  sizes, lambdas = tuple(config.loop.sizes), tuple(config.loop.lambdas)
  for variant in config.loop.variants:
    if variant not in loop.VARIANTS:
      raise ConfigError(f"config.loop.variants: {variant!r} is not one of {loop.VARIANTS}")
  if not sizes or any(int(n) < 1 for n in sizes):
    raise ConfigError(f"config.loop.sizes must be positive integers, got {sizes}")
  if any(r < 0 for r in lambdas):
    raise ConfigError(f"config.loop.lambdas must be >= 0, got {lambdas}")
  for field in ("gen0_steps", "generation_steps"):
    steps = tuple(config.train[field])
    if len(steps) != len(sizes):
      raise ConfigError(f"config.train.{field} needs one step count per entry of "
                        f"config.loop.sizes {sizes}, got {steps}")
  if config.loop.generations < 0:
    raise ConfigError(f"config.loop.generations must be >= 0, got {config.loop.generations}")


# Row fields that are coordinates or bookkeeping, not metrics: they get no TensorBoard chart.
_NOT_SCALARS = ("generation", "lambda", "n", "seed", "num_samples", "num_repeats")


class _Writers:
  """TensorBoard: one run per (n, lambda) setting, tags METRIC/VARIANT, the generation as step.

  tensorboard/n64_lambda1/ holds fid/baseline, fid/self_consuming, fid/self_correcting, ...,
  so one chart compares the variants and, across runs, the settings. Generation 0 is step 0
  of every variant's curve, and baseline (lambda = 0) is drawn in every lambda's run. Fit
  losses go to fit_loss/VARIANT against the optimizer step counted from generation 0.
  Reference values (real_*) and interval half-widths (*_ci95) stay in metrics.jsonl.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, enabled: bool = True):
    # enabled=False: a process other than the one that writes files.
    self._writer = metric_writers.MetricsWriter(workdir, enabled=enabled)
    self._lambdas = [float(r) for r in config.loop.lambdas] or [0.0]
    self._variants = [str(v) for v in config.loop.variants]

  def _targets(self, n: int, ratio: float, variant: str) -> list[tuple[str, list[str]]]:
    """(TensorBoard run, variant tags) pairs a row or loss of `variant` is logged to."""
    shared = variant in ("baseline", "generation0")
    runs = [f"n{n}_lambda{_tag(r)}" for r in (self._lambdas if shared else [ratio])]
    tags = self._variants if variant == "generation0" else [variant]
    return [(run, tags) for run in runs]

  def row(self, row: Row) -> None:
    values = {name: value for name, value in flat_metrics(row).items()
              if name not in _NOT_SCALARS and not name.startswith("real_")
              and not name.endswith("_ci95")}
    for run, tags in self._targets(int(row["n"]), float(row["lambda"]), row["variant"]):
      for tag in tags:
        self._writer.scalars(int(row["generation"]),
                             {f"{name}/{tag}": value for name, value in values.items()},
                             run=run)
    self._writer.flush()

  def fit_loss(self, n: int, ratio: float, variant: str, step: int, loss: float) -> None:
    for run, tags in self._targets(n, ratio, variant):
      self._writer.scalars(step, {f"fit_loss/{tag}": loss for tag in tags}, run=run)

  def close(self) -> None:
    self._writer.close()


def _finish_generation(directory: str, generation: int, train_state: Any, row: Row,
                       components: Components, keep: int) -> None:
  """Checkpoint, then the row: the row's presence marks the generation finished.

  `components.save` runs on every process (orbax's multi-host save is collective; a save of
  plain files writes from `parallel.is_file_writer()` alone); the rest on process 0 only.
  """
  gen_dir = generation_dir(directory, generation)
  state_dir = os.path.join(gen_dir, "state")
  writer = parallel.is_file_writer()
  if writer:
    if os.path.exists(state_dir):  # a crash between checkpoint and row: redo cleanly
      shutil.rmtree(state_dir)
    os.makedirs(gen_dir, exist_ok=True)
  parallel.sync(f"save {state_dir}")
  components.save(state_dir, train_state)
  parallel.sync(f"saved {state_dir}")
  if not writer:
    return
  outputs.write_json(os.path.join(gen_dir, "row.json"), row)
  # The fit's own checkpoints (a long fit's resume points) are superseded by `state`.
  shutil.rmtree(os.path.join(gen_dir, FIT_CHECKPOINTS), ignore_errors=True)
  if keep > 0:
    for old in finished_generations(directory)[:-keep]:
      if old > 0:
        shutil.rmtree(os.path.join(generation_dir(directory, old), "state"), ignore_errors=True)


def _write_results(workdir: str, config: ml_collections.ConfigDict) -> list[Row]:
  rows = collect_rows(workdir, config)
  # The rows live in the generations' row.json files; metrics.jsonl is rebuilt from them.
  metric_writers.MetricsWriter(workdir).replace_rows(rows)
  return rows


def run_loop(config: ml_collections.ConfigDict, workdir: str, components: Components,
             *, stop_after: Callable[[str, int], bool] | None = None) -> dict[str, Any]:
  """Runs (or resumes) the whole sweep with the given components; returns the summary.

  Args:
    config: the experiment's config (loop, train.gen0_steps / generation_steps, seed,
      outputs).
    workdir: output directory.
    components: the experiment's pieces.
    stop_after: test hook; called with (run name, generation) after each finished
      generation, a True return ends the sweep there (a simulated crash).
  """
  _validate(config)
  # Under jax.distributed every process runs this function and computes; process 0 alone
  # writes files, and decisions read from the workdir are process 0's (parallel.agreed).
  writer = parallel.is_file_writer()
  if writer:
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(workdir, "config.json")):  # the run's, never rewritten
      outputs.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  writers = _Writers(workdir, config, enabled=writer)
  seed = int(config.seed)
  eval_key = evaluation_key(seed)
  videos = bool(config.outputs.videos)
  total = int(config.loop.generations)
  try:
    for size_index, n in enumerate(config.loop.sizes):
      n = int(n)
      real = components.real_buffer(n)
      gen0_dir = generation_dir(run_dir(workdir, n, None, None), 0)
      start = time.time()
      if parallel.agreed(os.path.exists(os.path.join(gen0_dir, "row.json"))):
        gen0_state = None  # restored only if some run still has generations to do
      else:
        init_key, fit_key = jax.random.split(generation_key(seed, n, 0.0, "generation0", 0))
        gen0_state, fit_metrics = components.fit(
            components.init(init_key), real, fit_key, int(config.train.gen0_steps[size_index]),
            **_fit_options(components, os.path.join(gen0_dir, FIT_CHECKPOINTS),
                           functools.partial(writers.fit_loss, n, 0.0, "generation0")))
        evaluation = components.evaluate(gen0_state, eval_key)
        row = make_row(n=n, synthetic_ratio=0.0, variant="generation0", generation=0,
                       seed=seed, evaluation=evaluation,
                       generation_metrics={"train_loss": fit_metrics.get("train_loss")},
                       seconds=time.time() - start)
        if videos and components.render_prompts is not None:
          components.render_prompts(gen0_state, eval_key,
                                    os.path.join(workdir, "videos", f"n{n}", "gen000"))
        _finish_generation(os.path.dirname(gen0_dir), 0, gen0_state, row, components, -1)
        writers.row(row)
        _write_results(workdir, config)
      for variant, ratio in runs(config):
        name = (f"n{n}/baseline" if variant == "baseline"
                else f"n{n}/lambda{_tag(ratio)}/{variant}")
        directory = run_dir(workdir, n, ratio, variant)
        done = finished_generations(directory)
        last = parallel.agreed(done[-1] if done else 0)
        if last >= total:
          continue
        if gen0_state is None:
          gen0_state = _restore_generation0(components, workdir, n, seed)
        if last == 0:
          train_state = gen0_state
        else:
          train_state = components.restore(
              os.path.join(generation_dir(directory, last), "state"), gen0_state)
        synthetic = components.synthetic_buffer(n, ratio)
        state = loop.init_state(train_state, real, synthetic, jax.random.PRNGKey(0))
        state = state.replace(generation=jnp.asarray(last, jnp.int32))
        steps = int(config.train.generation_steps[size_index])
        progress = tqdm.tqdm(range(last + 1, total + 1), desc=name, unit="gen",
                             initial=last, total=total)
        for g in progress:
          start = time.time()
          state = state.replace(key=generation_key(seed, n, ratio, variant, g))
          # Fit losses are plotted against the optimizer step counted from generation 0.
          offset = int(config.train.gen0_steps[size_index]) + (g - 1) * steps
          log = functools.partial(_log_fit_loss, writers, n, ratio, variant, offset)
          if components.generation is not None:
            state, metrics, sampled = components.generation(n, ratio, variant)(state)
            _log_fit_losses(log, metrics.pop("fit_losses", None), config)
          else:
            state, metrics, sampled = _host_generation(
                components, state, n, ratio, variant, steps,
                os.path.join(generation_dir(directory, g), FIT_CHECKPOINTS), log)
          if components.score_synthetic is not None and state.synthetic.capacity:
            metrics = dict(metrics, **components.score_synthetic(state.synthetic))
          evaluation = components.evaluate(state.train_state, eval_key)
          row = make_row(n=n, synthetic_ratio=ratio, variant=variant, generation=g,
                         seed=seed, evaluation=evaluation, generation_metrics=metrics,
                         seconds=time.time() - start)
          if videos:
            video_dir = os.path.join(workdir, "videos", name)
            if g == total and components.render_prompts is not None:
              components.render_prompts(state.train_state, eval_key,
                                        os.path.join(video_dir, f"gen{g:03d}"))
            if (variant == "self_correcting" and components.render_correction is not None
                and g in (1, total)):
              components.render_correction(
                  sampled, state.synthetic, os.path.join(video_dir, f"correction_gen{g:03d}"))
          _finish_generation(directory, g, state.train_state, row, components,
                             int(config.outputs.keep_checkpoints))
          writers.row(row)
          _write_results(workdir, config)
          progress.set_postfix(fid=row.get("fid"))
          if stop_after is not None and stop_after(name, g):
            return {}
    floor = None
    if "self_correcting" in config.loop.variants and components.correction_floor is not None:
      floor_path = os.path.join(workdir, "correction_floor.json")
      if parallel.agreed(not os.path.exists(floor_path)):
        floor = components.correction_floor(eval_key)
        if writer:
          outputs.write_json(floor_path, floor)
      parallel.sync("correction floor")
      with open(floor_path) as f:
        floor = json.load(f)
  finally:
    writers.close()
    if components.close is not None:
      components.close()
  rows = _write_results(workdir, config)
  summary = summarize(rows, config)
  summary["seed"] = seed
  summary["preset"] = config.get("preset", "")
  if floor is not None:
    summary["correction_floor"] = floor
  if not writer:
    return summary
  outputs.write_json(os.path.join(workdir, "summary.json"), summary)
  if config.outputs.plots:
    loop_plots.plot_metrics(rows, os.path.join(workdir, "plots"), PLOTTED_METRICS,
                            references=loop_plots.reference_lines(rows, floor))
  if config.outputs.get("report", True):
    report.write_report([workdir])
  print(report.summary_text(rows, floor, title=f"{workdir}: last and best generation"))
  return summary


def _host_generation(components: Components, state: loop.LoopState, n: int, ratio: float,
                     variant: str, steps: int, checkpoint_dir: str,
                     log: Callable[[int, float], None]
                     ) -> tuple[loop.LoopState, dict[str, Any], loop.Buffer | None]:
  """One generation through the components' host functions (the impure path: each stage
  runs its own jitted pieces, a long fit checkpoints and resumes inside the generation)."""

  def sample_fn(train_state, real, previous, key):
    del real
    return components.sample(train_state, previous, key, n, ratio)

  def fit_fn(train_state, training_set, key):
    return components.fit(train_state, training_set, key, steps,
                          **_fit_options(components, checkpoint_dir, log))

  return loop.run_generation(state, variant=variant, sample_fn=sample_fn,
                             correct_fn=components.correct, fit_fn=fit_fn,
                             return_samples=True)


def _log_fit_loss(writers: "_Writers", n: int, ratio: float, variant: str, offset: int,
                  step: int, loss: float) -> None:
  writers.fit_loss(n, ratio, variant, offset + step, loss)


def _log_fit_losses(log: Callable[[int, float], None], losses: Any,
                    config: ml_collections.ConfigDict) -> None:
  """A fused fit's per-step losses (calls, steps per call) as the host fit logs them: the
  mean of every config.train.log_every steps (rounded to whole calls) and of the rest."""
  if losses is None:
    return
  losses = np.asarray(losses, np.float64)
  calls, per_call = losses.shape
  every = max(1, round(int(config.train.get("log_every", 0)) / per_call))
  for first in range(0, calls, every):
    last = min(first + every, calls)
    log(last * per_call, float(losses[first:last].mean()))


def _fit_options(components: Components, checkpoint_dir: str,
                 log: Callable[[int, float], None]) -> dict[str, Any]:
  """The keywords of a resumable fit (none for components without one)."""
  if not components.resumable_fit:
    return {}
  return {"checkpoint_dir": checkpoint_dir, "log": log}


def _restore_generation0(components: Components, workdir: str, n: int, seed: int) -> Any:
  """The shared generation-0 model from its checkpoint (template: an untrained init)."""
  template = components.init(generation_key(seed, n, 0.0, "generation0", 0))
  state_dir = os.path.join(generation_dir(run_dir(workdir, n, None, None), 0), "state")
  if not os.path.exists(state_dir):
    raise CheckpointError(f"{state_dir}: generation-0 checkpoint missing although its row "
                          "exists; delete the generation-0 directory to retrain it")
  return components.restore(state_dir, template)


def finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether every run of the sweep has all its generations and the summary is written."""
  if not os.path.exists(os.path.join(workdir, "summary.json")):
    return False
  total = int(config.loop.generations)
  for n in config.loop.sizes:
    gen0 = generation_dir(run_dir(workdir, int(n), None, None), 0)
    if not os.path.exists(os.path.join(gen0, "row.json")):
      return False
    for variant, ratio in runs(config):
      done = finished_generations(run_dir(workdir, int(n), ratio, variant))
      if (done[-1] if done else 0) < total:
        return False
  return True
