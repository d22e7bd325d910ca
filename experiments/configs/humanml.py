r"""The self-consuming motion loop (Gillman et al. 2024, section 5.2): MDM on text-to-motion.

  python -m experiments.run --config=experiments/configs/humanml.py                # default
  python -m experiments.run --config=experiments/configs/humanml.py:smoke          # tests
  python -m experiments.run --config=experiments/configs/humanml.py:paper \
      --config.data.root=/data/HumanML3D --config.data.subset_ids=subsets/n64.txt

Presets:
  ''      the built-in procedural corpus, n = 64 real motions, lambda = 1.0 (the paper's
          headline setting), all three variants, a small MDM; about 30 minutes on 2 CPU cores.
  smoke   a few short motions, a tiny MDM, 2 generations of a few steps: minutes, for tests.
  paper   n in {64, 128, 256, 2794}, lambda in {0.25, 0.5, 0.75, 1.0}, 50 generations, the
          paper's MDM (8 layers, latent 512) and step counts (GPU/TPU).

Sweeps: `loop.sizes` (n) and `loop.lambdas` are tuples; `train.gen0_steps` and
`train.generation_steps` hold one step count per size (the paper trains longer for larger n).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from experiments.configs.common import apply_preset
from selfconsume import evaluation
from selfconsume.models import evaluator
from selfconsume.physics import params as physics_params


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "humanml"
  config.seed = 0

  # Data: the procedural corpus unless `root` points at a HumanML3D directory.
  config.data = ml_collections.ConfigDict()
  config.data.root = ""                 # '' -> build the procedural corpus in corpus_dir
  config.data.corpus_dir = ""           # '' -> <workdir>/corpus
  config.data.corpus_size = 600         # motions in the procedural corpus (all splits)
  config.data.corpus_seed = 0
  config.data.subset_ids = ""           # file of training ids (the paper's n-subsets)
  config.data.min_frames = 40
  config.data.max_frames = 100          # HumanML3D allows 196; longer motions are cut
  config.data.split = "train"
  config.data.test_split = "test"

  config.text = ml_collections.ConfigDict()
  config.text.max_len = 20              # words per caption
  config.text.max_captions = 8          # captions kept per training motion

  # MDM (Tevet et al. 2023). The paper's model is 8 layers, latent 512, ff 1024, 4 heads.
  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 128
  config.model.num_layers = 3
  config.model.num_heads = 4
  config.model.ff_dim = 256
  config.model.dropout = 0.1
  config.model.cond_drop_prob = 0.1     # classifier-free guidance: text dropped in training

  config.diffusion = ml_collections.ConfigDict()
  config.diffusion.schedule = "cosine"
  config.diffusion.num_steps = 1000
  config.diffusion.prediction = "x0"

  config.sampling = ml_collections.ConfigDict()
  config.sampling.method = "ddim"
  config.sampling.num_steps = 25        # respaced DDIM steps (MDM samples with all 1000)
  config.sampling.guidance = 2.5
  config.sampling.eta = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32
  config.train.learning_rate = 1e-4
  config.train.weight_decay = 0.0
  config.train.grad_clip = 1.0
  config.train.gen0_steps = (1500,)     # one per entry of loop.sizes
  config.train.generation_steps = (300,)
  config.train.steps_per_call = 50      # optimizer steps fused into one jitted call
  config.train.log_every = 50
  config.train.multi_host = False       # jax.distributed.initialize() before the run

  # The loop. Variants: baseline (real only), self_consuming, self_correcting.
  config.loop = ml_collections.ConfigDict()
  config.loop.sizes = (64,)             # n, real training motions
  config.loop.lambdas = (1.0,)          # synthetic-to-real ratio
  config.loop.variants = ("baseline", "self_consuming", "self_correcting")
  config.loop.generations = 5           # generations after generation 0
  config.loop.sample_batch_size = 64    # motions per jitted sampling call (also evaluation)

  # Physics correction: each synthetic motion replaced by its corrected version with
  # probability gamma / (1 + gamma); the paper corrects every motion (gamma = inf).
  config.correction = ml_collections.ConfigDict()
  config.correction.gamma = float("inf")
  # The corrector's settings: every field of selfconsume.physics.params.CorrectorParams
  # (e.g. --config.correction.physics.refine_method=gradient
  # --config.correction.physics.refine_iterations=3) except gamma, which is the loop's.
  config.correction.physics = ml_collections.ConfigDict({
      name: value for name, value in dataclasses.asdict(physics_params.CorrectorParams()).items()
      if name != "gamma"})

  # Evaluation after every generation on fixed test prompts (selfconsume/evaluation.py)
  # with a frozen evaluator trained once per dataset (selfconsume/models/evaluator.py).
  config.eval = evaluation.default_config()
  config.eval.num_samples = 64
  config.eval.multimodality_prompts = 4
  config.eval.multimodality_samples = 4
  config.eval.multimodality_pairs = 4
  config.eval.evaluator = evaluator.default_config()
  config.eval.evaluator_cache = ""      # '' -> ~/.cache/selfconsume/evaluators

  # What a run writes besides metrics.jsonl / summary.json / checkpoints.
  config.outputs = ml_collections.ConfigDict()
  config.outputs.videos = True
  config.outputs.video_format = "gif"
  config.outputs.video_prompts = (
      "a person walks forward",
      "a person jumps in place",
      "a person waves with the right hand",
  )
  config.outputs.video_frames = 80      # 4 s at 20 fps (capped at data.max_frames)
  config.outputs.correction_videos = 2  # synthetic motions shown before vs after correction
  config.outputs.plots = True
  config.outputs.keep_checkpoints = -1  # per variant; -1 keeps every generation

  return apply_preset(config, arg, {"smoke": _smoke, "paper": _paper})


def _smoke(config: ml_collections.ConfigDict) -> None:
  """Tiny everything: the whole loop in a couple of minutes on a CPU."""
  config.data.corpus_size = 60
  config.data.max_frames = 40
  config.data.min_frames = 20
  config.model.latent_dim = 32
  config.model.num_layers = 1
  config.model.num_heads = 2
  config.model.ff_dim = 64
  config.diffusion.num_steps = 100
  config.sampling.num_steps = 5
  config.train.batch_size = 8
  config.train.gen0_steps = (20,)
  config.train.generation_steps = (10,)
  config.train.steps_per_call = 10
  config.train.log_every = 10
  config.loop.sizes = (8,)
  config.loop.generations = 2
  config.loop.sample_batch_size = 8
  config.eval.update(evaluation.smoke_config())
  config.eval.num_samples = 8
  config.eval.batch_size = 4
  config.eval.diversity_pairs = 8
  config.eval.multimodality_prompts = 2
  config.eval.multimodality_samples = 2
  config.eval.multimodality_pairs = 2
  config.eval.evaluator = evaluator.smoke_config()
  config.eval.evaluator.num_steps = 40
  config.outputs.video_prompts = ("a person walks forward",)
  config.outputs.correction_videos = 1


def _paper(config: ml_collections.ConfigDict) -> None:
  """Section 5.2 of the paper: the n x lambda grid, 50 generations, the full MDM."""
  config.data.max_frames = 196
  config.model.latent_dim = 512
  config.model.num_layers = 8
  config.model.num_heads = 4
  config.model.ff_dim = 1024
  config.sampling.num_steps = 1000
  config.sampling.method = "ddpm"
  config.train.batch_size = 64
  config.loop.sizes = (64, 128, 256, 2794)
  config.train.gen0_steps = (5000, 10000, 20000, 200000)
  config.train.generation_steps = (1000, 1000, 1000, 40000)
  config.loop.lambdas = (0.25, 0.5, 0.75, 1.0)
  config.loop.generations = 50
  config.loop.sample_batch_size = 64
  config.eval.update(evaluation.paper_config())
  config.outputs.keep_checkpoints = 3
