"""The paper's motion experiment: MDM retrained on real + synthetic motions, generation after
generation, for the variants baseline / self_consuming / self_correcting.

For every size n (real training motions) the generation-0 model is trained once and shared
by all variants and lambdas, as in the paper. Then, per lambda and variant, each generation
samples floor(lambda * n) motions from the previous model, corrects them in the physics
simulator (self_correcting only), fine-tunes on real + synthetic, evaluates on fixed test
prompts and checkpoints. Baseline does not depend on lambda (it never samples), so it runs
once per n and its rows carry lambda = 0.

Workdir (besides the sweep's own files, listed in selfconsume/sweep.py):
  vocab.json, dataset.json, identity.json   the run's vocabulary, data and identity
  corpus/                 the procedural corpus when no HumanML3D directory is given
  evaluator.json, evaluator/   the evaluator that scores the run (fingerprint, training
                          data, real-vs-real FID) and a copy of it
                          (selfconsume/humanml/evaluator_record.py)
  correction_floor.json   the real test motions after physics correction

The driver around the components (keys, resume, rows, writers, figures) is the shared
`selfconsume.sweep`; the components themselves are
`selfconsume.humanml.generation.build_components`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import ml_collections

from experiments.configs import humanml as humanml_config
from selfconsume import parallel
from selfconsume import sweep
from selfconsume import validation
from selfconsume import workdir as workdir_lib
from selfconsume.humanml import checks
from selfconsume.humanml import generation


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Entry point of `python -m experiments.run --config=experiments/configs/humanml.py`.

  The config and the workdir are checked before any work (selfconsume.validation,
  selfconsume.workdir): a rerun continues only the run its workdir holds.
  """
  validation.validate_with(config, humanml_config.get_config, checks.humanml)
  parallel.initialize_distributed(bool(config.train.get("multi_host", False)))
  claim = (workdir_lib.claim(workdir, config, workdir_lib.humanml_dataset(config))
           if jax.process_index() == 0 else contextlib.nullcontext())
  with claim:
    if sweep.finished(config, workdir):
      return workdir_lib.report_finished(
          workdir, f"{config.loop.generations} generations of {len(sweep.runs(config))} "
          f"run{'s' if len(sweep.runs(config)) != 1 else ''}",
          ("summary.json", "metrics.jsonl", "plots/"))
    components = generation.build_components(config, workdir)
    return sweep.run_loop(config, workdir, components)
