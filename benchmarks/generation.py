r"""One generation of the motion loop, fused into one compiled program vs run in stages.

  python -m benchmarks.generation                          # default preset, self_correcting
  python -m benchmarks.generation --preset=smoke --repeats=3
  python -m benchmarks.generation --override=train.generation_steps=100,

Builds the default preset's self_correcting generation (n = config.loop.sizes[0], lambda =
config.loop.lambdas[0]: sample -> physics-correct -> mix -> fine-tune) from an untrained MDM
(the work a generation does does not depend on the weights) and times it, after compilation:

  fused    `loop.make_generation(fused=True)`: one jitted program, the host waits once;
  staged   `loop.make_generation(fused=False)`: sample, correct and fit compiled one by one,
           the host waiting for each before it starts the next (what an eager driver does);
  stages   each stage alone (the staged generation's parts).

The runs are interleaved: each of --repeats rounds runs fused, staged and the three stages
once, in an order rotated from round to round, so a drift of the machine (its clock, a
neighbour on the host) reaches them alike; the best run of each counts, and the median of the
rounds' staged / fused ratios is reported beside it. Also reported: the compile times (the
first call's time less a run's: the fused program; the stages together) and how far the fused
and staged results are apart (the same computation: only XLA's rounding may differ).
Last line: one JSON object
  {"fused_s", "staged_s", "speedup" (staged / fused, best runs), "speedup_median_round",
   "runs_s" (every run, per round), "compile_s" (fused), "staged_compile_s",
   "stages_s": {"sample", "correct", "fit"}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any, Callable

import jax
import numpy as np

from benchmarks.humanml_seeds import apply_override
from experiments.configs import humanml as humanml_config
from selfconsume import loop
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import generation
from selfconsume.humanml import model as model_lib

VARIANT = "self_correcting"


def _interleaved_times(fns: dict[str, Callable[[], Any]], repeats: int
                       ) -> dict[str, list[float]]:
  """Seconds of each fn() (its result waited for) in each of `repeats` rounds; every round
  runs every fn once, round r starting at the r-th (rotated order: no fn always runs first,
  right after compilation or after the largest program)."""
  names = list(fns)
  times: dict[str, list[float]] = {name: [] for name in names}
  for r in range(repeats):
    for name in names[r % len(names):] + names[:r % len(names)]:
      start = time.perf_counter()
      jax.block_until_ready(fns[name]())
      times[name].append(time.perf_counter() - start)
  return times


def _first_call(fn, *args) -> tuple[float, object]:
  """(seconds, result) of the first call of a jitted function: compilation plus one run.

  Timed through the jit call itself: an executable from `lower(...).compile()` ran the
  fused generation about 2x slower here than the one jit compiles on its first call.
  """
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - start, out


def _max_difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="", help="a preset of experiments/configs/humanml.py")
  parser.add_argument("--workdir", default="runs/bench_generation",
                      help="where the procedural corpus is built (or config.data.corpus_dir)")
  parser.add_argument("--repeats", type=int, default=1, help="timed runs of each; the best counts")
  parser.add_argument("--override", action="append", default=[],
                      help="config field=value, e.g. train.generation_steps=100,")
  args = parser.parse_args(argv)

  config = humanml_config.get_config(args.preset)
  for assignment in args.override:
    apply_override(config, assignment)
  os.makedirs(args.workdir, exist_ok=True)
  data = data_lib.load_data(config, args.workdir)
  model = model_lib.MotionModel(config, data.vocab, data.train.mean, data.train.std)
  n, ratio = int(config.loop.sizes[0]), float(config.loop.lambdas[0])
  real = data_lib.real_examples(config, data, n)
  synthetic = loop.empty_buffer(jax.tree.map(lambda x: x[:1], real.data),
                                loop.num_synthetic(ratio, n))
  state = loop.init_state(model.init(jax.random.PRNGKey(0)), real, synthetic,
                          jax.random.PRNGKey(1))
  sample_fn, correct_fn, fit_fn = generation.loop_stages(config, model, n)

  # Fused: the first call compiles the one program (and runs it), later calls only run it.
  fused = loop.make_generation(variant=VARIANT, sample_fn=sample_fn, correct_fn=correct_fn,
                               fit_fn=fit_fn)
  fused_first, fused_out = _first_call(fused, state)

  # The stages alone, on the inputs the generation hands them (keys as run_generation's).
  _, sample_key, correct_key, fit_key = jax.random.split(state.key, 4)
  sample_program, correct_program, fit_program = (
      jax.jit(f) for f in (sample_fn, correct_fn, fit_fn))
  sample_args = (state.train_state, state.real, state.synthetic, sample_key)
  sample_first, sampled = _first_call(sample_program, *sample_args)
  correct_first, (corrected, _) = _first_call(correct_program, correct_key, sampled)
  fit_args = (state.train_state, loop.concat(state.real, corrected), fit_key)
  fit_first, _ = _first_call(fit_program, *fit_args)

  # Staged: the same stages, the host waiting between them (its first call warms it up).
  staged = loop.make_generation(variant=VARIANT, sample_fn=sample_fn, correct_fn=correct_fn,
                                fit_fn=fit_fn, fused=False)
  staged_out = staged(state)

  times = _interleaved_times({
      "fused": lambda: fused(state), "staged": lambda: staged(state),
      "sample": lambda: sample_program(*sample_args),
      "correct": lambda: correct_program(correct_key, sampled),
      "fit": lambda: fit_program(*fit_args)}, args.repeats)
  fused_s, staged_s = min(times["fused"]), min(times["staged"])
  stages_s = {name: min(times[name]) for name in ("sample", "correct", "fit")}
  compile_s = fused_first - fused_s
  staged_compile_s = sample_first + correct_first + fit_first - sum(stages_s.values())

  result = {
      "fused_s": fused_s, "staged_s": staged_s, "speedup": staged_s / fused_s,
      "speedup_median_round": float(np.median(np.divide(times["staged"], times["fused"]))),
      "runs_s": times,
      "compile_s": compile_s,
      "staged_compile_s": staged_compile_s,
      "stages_s": stages_s,
      "max_param_difference": _max_difference(fused_out[0].train_state.params,
                                              staged_out[0].train_state.params),
      "max_motion_difference": _max_difference(fused_out[0].synthetic.data["motion"],
                                               staged_out[0].synthetic.data["motion"]),
      "preset": args.preset or "default", "variant": VARIANT, "n": n, "lambda": ratio,
      "synthetic_motions": int(synthetic.capacity),
      "generation_steps": int(config.train.generation_steps[0]),
      "sampling_steps": int(config.loop.sampling.num_steps), "repeats": args.repeats,
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
  print(f"fused {fused_s:.2f} s, staged {staged_s:.2f} s (speedup {result['speedup']:.3f}, "
        f"median of rounds {result['speedup_median_round']:.3f}); "
        f"compile {compile_s:.1f} s fused, {result['staged_compile_s']:.1f} s staged; stages "
        + ", ".join(f"{k} {v:.2f} s" for k, v in stages_s.items()))
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
