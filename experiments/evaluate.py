r"""Re-scores any checkpoint of a motion run with the run's own evaluator.

  python -m experiments.evaluate --workdir=runs/humanml                # self_correcting, last
  python -m experiments.evaluate --workdir=runs/humanml --variant=self_consuming \
      --generation=3 --num_samples=256 --seed=1

Loads the run's config, data and evaluator (the copy in WORKDIR/evaluator/, else the
evaluator cache) and checks that evaluator against WORKDIR/evaluator.json: a different
fingerprint (weights) or training data ends the command with a one-line error and exit
code 2, because its numbers would not be comparable with the run's. Then it restores the
checkpoint and evaluates it exactly as the run does after every generation (same prompts,
same metrics, physics metrics included). With the run's seed and number of prompts (the
defaults) it reproduces the run's row for that generation; other --seed / --num_samples
values give new noise / more prompts. Prints the metrics beside the run's row and writes
WORKDIR/evaluations/<variant>_gen<G>_seed<S>_prompts<P>.json.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from absl import app
from absl import flags

from experiments import run as run_lib
from experiments import sample as sample_cli
from selfconsume import errors
from selfconsume import outputs
from selfconsume import sweep
from selfconsume.humanml import evaluator as evaluator_lib
from selfconsume.humanml import evaluator_record
from selfconsume.humanml import generation as generation_lib

# The metrics printed, in order (a row holds more; the JSON file has all).
PRINTED = ("fid", "r_precision", "matching", "diversity", "multimodality", "float_mm",
           "penetrate_mm", "skate", "real_fid")


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "Run directory of experiments.run (humanml).")
  flags.DEFINE_string("variant", "self_correcting",
                      "baseline, self_consuming, self_correcting or generation0.")
  flags.DEFINE_string("generation", "last", "Generation number or 'last'.")
  flags.DEFINE_integer("num_samples", None, "Evaluation prompts (default: the run's "
                       "config.eval.num_samples).")
  flags.DEFINE_integer("seed", None, "Evaluation seed (default: the run's config.seed, which "
                       "reproduces the run's numbers).")
  flags.DEFINE_integer("n", None, "Size n of the run (default: the run's first).")
  flags.DEFINE_float("lambda", None, "Lambda of the run (default: the run's first).")
  flags.DEFINE_bool("library_logs", False, "Show the INFO logs of orbax, jax and matplotlib.")


def find_evaluator(workdir: str, config: Any) -> tuple[str, dict[str, Any]]:
  """The directory of the run's evaluator and its record, checked before anything is built.

  Raises:
    CheckpointError: no record, no evaluator to be found, or one whose fingerprint or
      training data differs from the record.
  """
  record = evaluator_record.read_record(workdir)
  if record is None:
    raise errors.CheckpointError(
        f"{os.path.join(workdir, evaluator_record.RECORD_FILE)} is missing: this workdir does "
        "not record which evaluator scored it (runs record it since the evaluate command "
        "exists), so a re-score could not be compared with its numbers")
  copy = evaluator_record.copy_path(workdir)
  cache = os.path.join(config.eval.get("evaluator_cache") or evaluator_lib.default_cache_dir(),
                       f"evaluator-{record.get('cache_key')}")
  for path in (copy, cache):
    if os.path.isdir(path):
      evaluator_record.check(workdir, evaluator_record.describe(
          evaluator_lib.load_evaluator(path)), record)
      return path, record
  raise errors.CheckpointError(f"the run's evaluator {record.get('fingerprint')} is neither in "
                               f"{copy} nor in the cache {cache}")


def evaluate_checkpoint(workdir: str, *, variant: str = "self_correcting",
                        generation: str = "last", num_samples: int | None = None,
                        seed: int | None = None, n: int | None = None,
                        synthetic_ratio: float | None = None) -> dict[str, Any]:
  """Evaluates one checkpoint as the run did; returns the result written to evaluations/.

  Returns:
    {'variant', 'generation', 'n', 'lambda', 'checkpoint', 'seed', 'num_samples',
     'evaluator' (the record), 'metrics' (the row's metrics), 'recorded' (the run's row for
     that checkpoint, or None), 'reproduces_run' (whether seed and prompts are the run's)}.
  """
  config = sample_cli.load_run_config(workdir)
  state_dir, number = sample_cli.checkpoint_dir(workdir, config, variant, generation, n,
                                                synthetic_ratio)
  find_evaluator(workdir, config)
  run_seed, run_prompts = int(config.seed), int(config.eval.num_samples)
  seed = run_seed if seed is None else int(seed)
  if num_samples is not None:
    if num_samples < 2:
      raise errors.ConfigError(f"--num_samples must be >= 2, got {num_samples}")
    config.eval.num_samples = int(num_samples)
  n = int(config.loop.sizes[0]) if n is None else int(n)
  ratio = float(config.loop.lambdas[0]) if synthetic_ratio is None else float(synthetic_ratio)
  components = generation_lib.build_components(config, workdir)
  try:
    template = components.init(sweep.generation_key(int(config.seed), n, 0.0,
                                                      "generation0", 0))
    state = components.restore(state_dir, template)
    row = components.evaluate(state, sweep.evaluation_key(seed))
  finally:
    if components.close is not None:
      components.close()
  metrics = {k: outputs.to_jsonable(v) for k, v in row.items()}
  recorded = _recorded_row(workdir, n, ratio, variant, number)
  result = {"variant": variant, "generation": number, "n": n,
            "lambda": 0.0 if variant in ("baseline", "generation0") else ratio,
            "checkpoint": state_dir, "seed": seed, "num_samples": int(config.eval.num_samples),
            "evaluator": evaluator_record.read_record(workdir), "metrics": metrics,
            "recorded": recorded,
            "reproduces_run": seed == run_seed and int(config.eval.num_samples) == run_prompts}
  name = (f"{variant}_gen{number:03d}_seed{seed}_prompts{int(config.eval.num_samples)}.json")
  outputs.write_json(os.path.join(workdir, "evaluations", name), result)
  result["path"] = os.path.join(workdir, "evaluations", name)
  return result


def _recorded_row(workdir: str, n: int, ratio: float, variant: str, generation: int
                  ) -> dict[str, Any] | None:
  for row in outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl")):
    same_run = (row["variant"] == variant or (generation == 0 and row["generation"] == 0))
    same_lambda = variant in ("baseline", "generation0") or generation == 0 or (
        abs(float(row["lambda"]) - ratio) < 1e-9)
    if row["n"] == n and row["generation"] == generation and same_run and same_lambda:
      return row
  return None


def format_result(result: dict[str, Any]) -> str:
  """The metrics beside the run's recorded row, one per line."""
  recorded = result["recorded"] or {}
  note = ("same seed and prompts as the run" if result["reproduces_run"]
          else "seed or prompts differ from the run's: new noise, not a reproduction")
  lines = [f"{result['variant']} generation {result['generation']} (n={result['n']}, "
           f"lambda={result['lambda']:g}), seed {result['seed']}, {result['num_samples']} "
           f"prompts; evaluator {result['evaluator'].get('fingerprint')} ({note})",
           f"{'metric':<16}{'now':>24}{'run':>24}"]
  for name in PRINTED:
    if name not in result["metrics"]:
      continue
    now, then = result["metrics"][name], recorded.get(name)
    fmt = lambda v: ("-" if v is None else  # noqa: E731
                     " ".join(f"{x:.4f}" for x in v) if isinstance(v, list) else f"{v:.4f}")
    lines.append(f"{name:<16}{fmt(now):>24}{fmt(then):>24}")
  lines.append(f"written to {result['path']}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  args = flags.FLAGS
  if not args.library_logs:
    outputs.quiet_console()
  run_lib.enable_compilation_cache()
  run_lib.relax_garbage_collection()
  try:
    if not args.workdir:
      raise errors.ConfigError("--workdir is required")
    result = evaluate_checkpoint(
        args.workdir, variant=args.variant, generation=args.generation,
        num_samples=args.num_samples, seed=args.seed, n=args.n,
        synthetic_ratio=args["lambda"].value)
  except (errors.ConfigError, errors.DataError, errors.CheckpointError,
          errors.NonFiniteError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(format_result(result))


if __name__ == "__main__":
  define_flags()
  app.run(main)
