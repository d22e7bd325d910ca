r"""The self-consuming motion loop (Gillman et al. 2024, section 5.2): MDM on text-to-motion.

  python -m experiments.run --config=experiments/configs/humanml.py                # default
  python -m experiments.run --config=experiments/configs/humanml.py:smoke          # tests
  python -m experiments.run --config=experiments/configs/humanml.py:paper \
      --config.data.root=/data/HumanML3D --config.data.subset_ids=subsets/n64.txt

Presets:
  ''      the built-in procedural corpus, n = 64 real motions, lambda = 1.0 (the paper's
          headline setting), all three variants, a small MDM; 23 minutes on 2 CPU cores with
          AVX-512 (Zen 5), 31 on the first round's, 75-80 on an AVX2-only EPYC.
  smoke   a few short motions, a tiny MDM, 2 generations of a few steps: minutes, for tests.
  paper   n in {64, 128, 256, 2794}, lambda in {0.25, 0.5, 0.75, 1.0}, 50 generations, the
          paper's MDM (8 layers, latent 512) and step counts (GPU/TPU).
  paper_check  the paper's shapes (MDM, 196 frames, batch 64, corrector chunk 256) for one
          generation at n = 256 with a few steps: run it on a CPU before accelerator hours.

Sweeps: `loop.sizes` (n) and `loop.lambdas` are tuples; `train.gen0_steps` and
`train.generation_steps` hold one step count per size (the paper trains longer for larger n).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from experiments.configs.common import apply_preset
from selfconsume.humanml import evaluation
from selfconsume.humanml import evaluator
from selfconsume.physics import params as physics_params


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "humanml"
  config.seed = 0

  # Data: the procedural corpus unless `root` points at a HumanML3D directory.
  config.data = ml_collections.ConfigDict()
  config.data.root = ""                 # '' -> build the procedural corpus in corpus_dir
  config.data.corpus_dir = ""           # '' -> <workdir>/corpus
  # Motions in the procedural corpus (all splits): 1600 gives a 240-motion test split, the
  # whole of which every generation is scored on (the paper: its subset's 546).
  config.data.corpus_size = 1600
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

  # Sampling for evaluation, videos and experiments/sample.py (MDM's evaluation samples
  # with guidance 2.5). The loop's synthetic data has its own settings: loop.sampling.
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
  # One step count per entry of loop.sizes. Generation 0: 2500 steps = 1250 epochs of the
  # 64 motions (the paper: 5000 x 64 = 5000 epochs); each later generation 62 epochs of
  # real + synthetic (the paper: 1000 x 64 / 128 = 500). What fits 30 minutes of 2 CPU cores
  # with 4 generations (5 generations at 3000 / 300 took 37 min).
  config.train.gen0_steps = (2500,)
  config.train.generation_steps = (250,)
  # Each later generation fine-tunes the previous weights with a new AdamW (the paper's
  # code builds a fresh optimizer per generation); False carries the moments over.
  config.train.fresh_optimizer = True
  config.train.steps_per_call = 50      # optimizer steps fused into one jitted call
  config.train.log_every = 50           # steps between fit-loss points (TensorBoard, bar)
  # Steps between checkpoints inside one fit (rounded to whole calls; 0 = none): a fit
  # killed midway resumes from its last checkpoint with the same result.
  config.train.checkpoint_every = 1000
  config.train.multi_host = False       # jax.distributed.initialize() before the run

  # The loop. Variants: baseline (real only), self_consuming, self_correcting.
  config.loop = ml_collections.ConfigDict()
  config.loop.sizes = (64,)             # n, real training motions
  config.loop.lambdas = (1.0,)          # synthetic-to-real ratio
  config.loop.variants = ("baseline", "self_consuming", "self_correcting")
  config.loop.generations = 4           # generations after generation 0
  config.loop.sample_batch_size = 64    # motions per jitted sampling call (also evaluation)
  # One generation (sample -> correct -> mix -> fit) as one compiled program, the host
  # waiting once; False compiles the stages one by one (benchmarks/generation.py times both).
  config.loop.fused = True
  # How the loop samples its synthetic motions. The paper: 1000-step ancestral sampling and,
  # in effect, no classifier-free guidance (guidance = 1). 100 respaced ancestral steps cost a
  # tenth on the CPU (the paper preset uses 1000).
  config.loop.sampling = ml_collections.ConfigDict()
  config.loop.sampling.method = "ddpm"
  config.loop.sampling.num_steps = 100
  config.loop.sampling.guidance = 1.0
  config.loop.sampling.eta = 0.0
  # A synthetic motion is trained with 'all' captions of the real motion whose caption
  # prompted it (the paper) or with that 'prompt' only. Synthetic motions are replaced
  # every generation (the paper), never accumulated.
  config.loop.synthetic_captions = "all"

  # Physics correction: each synthetic motion replaced by its corrected version with
  # probability gamma / (1 + gamma); the paper corrects every motion (gamma = inf).
  config.correction = ml_collections.ConfigDict()
  config.correction.gamma = float("inf")
  # The corrector's settings: every field of selfconsume.physics.params.CorrectorParams
  # (e.g. --config.correction.physics.refine_method=gradient
  # --config.correction.physics.refine_iterations=3).
  config.correction.physics = ml_collections.ConfigDict(
      dataclasses.asdict(physics_params.CorrectorParams()))
  # A motion the humanoid could not imitate without a fail-safe reset is left out of the
  # generation's training data (fewer synthetic motions that generation; rows report
  # `dropped_fraction`). The paper's code keeps it corrected (failsafe_min_imitated 0.5 +
  # 'keep', the paper preset), but each reset is a teleport of the body onto the reference
  # (up to 0.5 m in one frame): kept, they make the corrected set's frame-to-frame change in
  # joint velocity 5x the samples' and 10x real motion's (benchmarks.humanml_diagnostics,
  # `velocity_jumps`, seed 0's generation 0), and a model fitted to them learns the jumps.
  # Returned as sampled ('original'), they are the worst samples: last-generation FID over
  # seeds 0-2 was 0.750 / 0.567 / 0.700 against 'drop''s 0.456 / 0.491 / 0.697 (README).
  # 'blend' (simulated where imitated, the low-passed sample where not: no teleport, nothing
  # dropped) ended below 'drop' on held-out seeds 11 and 12 (0.644 / 0.618 against 0.772 /
  # 0.669) and above it on seed 0 (0.511 against 0.456): no reason yet to switch (README).
  config.correction.physics.failsafe_min_imitated = 1.0
  config.correction.physics.failsafe_unrealisable = "drop"

  # Evaluation after every generation on fixed test prompts (selfconsume/humanml/evaluation.py)
  # with a frozen evaluator trained once per dataset (selfconsume/humanml/evaluator.py).
  # The paper scores every generation on its whole test split, multimodality off. 256
  # prompts (the whole 240-motion test split of the default corpus) with bootstrap intervals.
  config.eval = evaluation.default_config()
  config.eval.num_samples = 256
  config.eval.multimodality_prompts = 0
  config.eval.evaluator = evaluator.default_config()
  config.eval.evaluator_cache = ""      # '' -> ~/.cache/selfconsume/evaluators

  # What a run writes besides metrics.jsonl / summary.json / checkpoints.
  config.outputs = ml_collections.ConfigDict()
  config.outputs.videos = True
  config.outputs.video_format = "mp4"   # 'mp4' (H.264 via imageio-ffmpeg) or 'gif'
  config.outputs.video_prompts = (
      "a person walks forward",
      "a person jumps in place",
      "a person waves with the right hand",
  )
  config.outputs.video_frames = 80      # 4 s at 20 fps (capped at data.max_frames)
  config.outputs.correction_videos = 2  # synthetic motions shown before vs after correction
  config.outputs.plots = True
  config.outputs.report = True          # report.html at the end of the run
  config.outputs.keep_checkpoints = -1  # per variant; -1 keeps every generation

  return apply_preset(config, arg, {"smoke": _smoke, "paper": _paper,
                                    "paper_check": _paper_check})


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
  config.loop.sampling.num_steps = 5
  config.train.batch_size = 8
  config.train.gen0_steps = (20,)
  config.train.generation_steps = (10,)
  config.train.steps_per_call = 10
  config.train.log_every = 10
  config.train.checkpoint_every = 10
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
  config.eval.bootstrap_samples = 20
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
  config.train.steps_per_call = 100
  config.train.log_every = 1000
  config.train.checkpoint_every = 5000
  # Motions simulated per compiled call of the corrector: an accelerator runs a chunk of
  # 256 humanoids at once (the CPU default of 8 keeps a 2-core machine's memory low).
  config.correction.physics.max_batch = 256
  # The paper's code keeps every corrected motion, resets and all.
  config.correction.physics.failsafe_min_imitated = 0.5
  config.correction.physics.failsafe_unrealisable = "keep"
  config.loop.sampling.num_steps = 1000
  config.eval.update(evaluation.paper_config())
  # The paper scores each generation once, on the subset's whole test split (546 motions),
  # without multimodality.
  config.eval.num_samples = 1024
  config.eval.num_repeats = 1
  config.eval.multimodality_prompts = 0
  config.outputs.keep_checkpoints = 3


def _paper_check(config: ml_collections.ConfigDict) -> None:
  """The paper preset's shapes with its step counts cut to a few: a CPU check to run before
  spending accelerator hours. One generation at n = 256, lambda = 1 (so the corrector runs
  one full chunk of 256), the paper's MDM, frames, batch, sampling and corrector chunk; a
  shape or memory bug shows here. Step counts, sampling steps, the evaluator's training and
  the evaluation's repeats are cut, so its numbers mean nothing.
  """
  _paper(config)
  config.loop.sizes = (256,)
  config.loop.lambdas = (1.0,)
  config.loop.generations = 1
  config.train.gen0_steps = (4,)
  config.train.generation_steps = (2,)
  config.train.steps_per_call = 2
  config.train.log_every = 2
  config.train.checkpoint_every = 2     # one checkpoint of the full-size state mid-fit
  config.sampling.num_steps = 2
  config.loop.sampling.num_steps = 2
  config.eval.num_samples = 64
  config.eval.num_repeats = 1
  config.eval.multimodality_prompts = 2
  config.eval.multimodality_samples = 2
  config.eval.multimodality_pairs = 1
  config.eval.evaluator.num_steps = 20
  config.eval.evaluator.warmup_steps = 5
  config.outputs.keep_checkpoints = -1
