r"""Trains the text-motion evaluator and checks that its metrics mean what they should.

  python -m experiments.run --config=experiments/configs/evaluator.py --workdir=runs/evaluator
  python -m experiments.run --config=experiments/configs/evaluator.py \
      --config.data.root=/data/HumanML3D --workdir=runs/evaluator-real

Writes <workdir>/evaluator_report.json: where the evaluator is cached, its training time, and
sanity checks on the test split (FID of two real halves vs real against frame-shuffled and noise
motions, R-precision of real motions with their own captions, own-caption vs other-family
distances, determinism). The evaluator itself goes to the shared cache (`cache_dir`), keyed by
the training data's fingerprint and `evaluator`; the motion loop finds it there when its data
and evaluator config are the same.

Presets: '' (the procedural corpus of 4000 motions; about 5 minutes of compute on 2 CPU cores),
'smoke' (tiny corpus and evaluator, for tests), 'paper' (HumanML3D-sized evaluator: wider,
longer training; needs --config.data.root).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common
from selfconsume.humanml import evaluation
from selfconsume.humanml import evaluator


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "evaluator"
  config.seed = 0

  # Same data fields as experiments/configs/humanml.py: '' root -> the procedural corpus, built
  # once into corpus_dir ('' -> ~/.cache/selfconsume/corpus/size<N>-seed<S>). 4000 motions give a
  # 600-motion test split: FID between its 300-motion halves (the sampling floor of FID) is
  # then ~3% of FID against noise motions; with 150-motion halves (2000) it is ~5%, with 45
  # (600, humanml.py's default corpus) ~20%.
  config.data = ml_collections.ConfigDict()
  config.data.root = ""
  config.data.corpus_dir = ""
  config.data.corpus_size = 4000
  config.data.corpus_seed = 0
  config.data.min_frames = 40
  config.data.max_frames = 120
  config.data.split = "train"          # the evaluator trains on this split
  config.data.test_split = "test"      # the sanity checks run on this one

  config.evaluator = evaluator.default_config()
  config.cache_dir = ""                # '' -> ~/.cache/selfconsume/evaluators
  config.eval = evaluation.default_config()

  def smoke(c):
    c.data.corpus_size = 240           # 36 test motions: R-precision needs groups of 32
    c.data.min_frames = 20
    c.data.max_frames = 40
    c.evaluator = evaluator.smoke_config()
    c.eval = evaluation.smoke_config()

  def paper(c):
    c.data.max_frames = 196
    c.evaluator.width = 256
    c.evaluator.embed_dim = 256
    c.evaluator.motion_layers = 4
    c.evaluator.text_layers = 4
    c.evaluator.num_steps = 30000
    c.evaluator.learning_rate = 3e-4
    c.eval = evaluation.paper_config()

  return common.apply_preset(config, arg, {"smoke": smoke, "paper": paper})
