r"""Text to motion from any checkpoint of a loop run.

  python -m experiments.sample --workdir=runs/humanml --text="a person jumps forward twice"
  python -m experiments.sample --workdir=runs/humanml --variant=self_consuming \
      --generation=3 --prompts_file=prompts.txt --num_samples=4 --length_s=4 --correct

Loads the checkpoint of one variant and generation (with the run's config, vocabulary and
normalisation), samples `num_samples` motions per prompt in fixed-size batches (one compile),
optionally corrects them in the physics simulator, and writes for every prompt
samples/<slug>/
  results.npy    MDM's format (motion-diffusion-model's sample/generate.py): a dict with
                 'motion' (num_samples, 22, 3, frames) joint positions in metres,
                 'text', 'lengths', 'num_samples' = 1 (the prompt), 'num_repetitions'
                 (= --num_samples); results.txt and results_len.txt beside it. MDM's
                 renderers read it (visualize/render_mesh --input_path samples/<slug>/
                 sample00_rep01.mp4 finds results.npy next to the video)
  sample00_repKK.mp4   one video per sample (sampled beside corrected with --correct)
  sample00_repKK.html  interactive 3-D view (sampled and corrected overlaid with --correct)
  features.npy   (num_samples, frames, 263) raw HumanML3D features
  joints.npy     (num_samples, frames, 22, 3) joint positions in metres
  corrected/results.npy, corrected_features.npy, corrected_joints.npy   with --correct
  physics.json   float_mm / penetrate_mm / skate / jerk of each sample (and of the corrected)
The length defaults to the run's longest training motion (config.data.max_frames). Words
the model never saw in training are named in a warning; a prompt of unknown words only is an
error. The same --seed gives the same samples.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selfconsume import errors
from selfconsume import outputs
from selfconsume import sweep
from selfconsume.data import text as text_lib
from selfconsume.humanml import correction
from selfconsume.humanml import model as model_lib
from selfconsume.humanml import training
from selfconsume.motion import render
from selfconsume.motion import viewer
from selfconsume.physics import metrics as physics_metrics

FPS = 20
VIDEO_FORMATS = ("mp4", "gif")


def define_flags() -> None:
  """The command line (defined only when this module is the program, so that importing
  `sample_prompts` does not claim flag names that experiments.run also uses)."""
  flags.DEFINE_string("workdir", None, "Run directory of experiments.run (humanml).")
  flags.DEFINE_string("variant", "self_correcting",
                      "baseline, self_consuming, self_correcting or generation0.")
  flags.DEFINE_string("generation", "last", "Generation number or 'last'.")
  flags.DEFINE_string("text", None, "One prompt.")
  flags.DEFINE_string("prompts_file", None, "A file with one prompt per line.")
  flags.DEFINE_integer("num_samples", 4, "Motions per prompt.")
  flags.DEFINE_float("length_s", None, "Motion length in seconds (default: the run's "
                     "config.data.max_frames / 20).")
  flags.DEFINE_float("guidance", 2.5, "Classifier-free guidance scale.")
  flags.DEFINE_bool("correct", False, "Also run the physics corrector.")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_integer("n", None, "Size n of the run (default: the run's first).")
  flags.DEFINE_float("lambda", None, "Lambda of the run (default: the run's first).")
  flags.DEFINE_enum("video_format", "mp4", VIDEO_FORMATS, "Video file format.")
  flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/samples).")
  flags.DEFINE_bool("library_logs", False, "Show the INFO logs of orbax, jax and matplotlib.")


def slug(text: str, max_len: int = 48) -> str:
  """'A person jumps forward twice!' -> 'a_person_jumps_forward_twice'."""
  words = re.findall(r"[a-z0-9]+", text.lower())
  return ("_".join(words)[:max_len].rstrip("_")) or "prompt"


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise errors.CheckpointError(
        f"{workdir}: no config.json; not a workdir of `python -m experiments.run "
        "--config=experiments/configs/humanml.py`")
  config = ml_collections.ConfigDict(outputs.read_json(path))
  if config.get("experiment") != "humanml":
    raise errors.CheckpointError(f"{path}: experiment is {config.get('experiment')!r}, "
                                 "not 'humanml'")
  return config


def checkpoint_dir(workdir: str, config: ml_collections.ConfigDict, variant: str,
                   generation: str, n: int | None = None,
                   synthetic_ratio: float | None = None) -> tuple[str, int]:
  """The checkpoint directory of (variant, generation) and the generation number.

  Raises CheckpointError that lists what exists when the variant or generation is unknown.
  """
  sizes = [int(s) for s in config.loop.sizes]
  n = sizes[0] if n is None else n
  if n not in sizes:
    raise errors.CheckpointError(f"n = {n} is not a size of this run; sizes: {sizes}")
  ratios = [float(r) for r in config.loop.lambdas]
  ratio = ratios[0] if synthetic_ratio is None else float(synthetic_ratio)
  if variant != "baseline" and variant != "generation0" and ratio not in ratios:
    raise errors.CheckpointError(f"lambda = {ratio:g} is not one of this run's {ratios}")
  known = ["generation0"] + list(config.loop.variants)
  if variant not in known:
    raise errors.CheckpointError(f"unknown variant {variant!r}; this run has {known}")
  gen0 = sweep.generation_dir(sweep.run_dir(workdir, n, None, None), 0)
  runs = {"generation0": None}
  finished = {}
  if os.path.exists(os.path.join(gen0, "row.json")):
    finished["generation0"] = [0]
  for v in config.loop.variants:
    directory = sweep.run_dir(workdir, n, ratio, v)
    runs[v] = directory
    gens = sweep.finished_generations(directory)
    if finished.get("generation0"):
      gens = [0] + gens
    finished[v] = [g for g in gens
                   if g == 0 or os.path.isdir(os.path.join(sweep.generation_dir(directory, g),
                                                           "state"))]
  available = finished.get(variant, [])
  if not available:
    have = {v: g for v, g in finished.items() if g}
    raise errors.CheckpointError(
        f"{workdir}: no checkpoint of variant {variant!r} (n={n}, lambda={ratio:g}); "
        f"checkpoints exist for {have or 'nothing yet'}")
  if generation == "last":
    number = available[-1]
  else:
    try:
      number = int(generation)
    except ValueError:
      raise errors.ConfigError(f"--generation must be an integer or 'last', got "
                               f"{generation!r}") from None
    if number not in available:
      raise errors.CheckpointError(f"no checkpoint of {variant!r} at generation {number}; "
                                   f"generations with checkpoints: {available}")
  if number == 0:
    return os.path.join(gen0, "state"), 0
  return os.path.join(sweep.generation_dir(runs[variant], number), "state"), number


def check_prompts(prompts: Sequence[str], max_len: int, vocab: Any = None
                  ) -> tuple[list[str], dict[str, list[str]]]:
  """Stripped prompts and, per prompt, the words the model's vocabulary does not have.

  Unknown words are encoded as <unk> (the model never saw them): each prompt that has some
  is named in a warning. A prompt of unknown words only would condition on nothing, so it
  is a ConfigError, as are empty and too long prompts.
  """
  out, unknown = [], {}
  for i, prompt in enumerate(prompts):
    prompt = prompt.strip()
    words = text_lib.tokenize(prompt)
    if not words:
      raise errors.ConfigError(f"prompt {i + 1} is empty (no words): {prompt!r}")
    if len(words) > max_len:
      raise errors.ConfigError(f"prompt {i + 1} has {len(words)} words; the model's tokenizer "
                               f"takes at most {max_len} (config.text.max_len): {prompt!r}")
    if vocab is not None:
      missing = [w for w in words if vocab.ids(w) == [1]]
      if len(missing) == len(words):
        raise errors.ConfigError(
            f"prompt {i + 1} has no word the model knows ({', '.join(missing)}); its "
            f"vocabulary is the {vocab.size - 2} words of the run's training captions "
            f"(vocab.json in the workdir): {prompt!r}")
      if missing:
        unknown[prompt] = sorted(set(missing), key=missing.index)
        absl_logging.warning(
            "prompt %d: unknown words %s (not in the %d words of the training captions; "
            "the model reads them as <unk>): %r", i + 1,
            ", ".join(repr(w) for w in unknown[prompt]), vocab.size - 2, prompt)
    out.append(prompt)
  if not out:
    raise errors.ConfigError("no prompts: give --text or a non-empty --prompts_file")
  return out, unknown


def mdm_results(joints: np.ndarray, prompt: str, lengths: np.ndarray) -> dict[str, Any]:
  """MDM's results.npy dict for the samples (K, frames, 22, 3) of one prompt.

  As motion-diffusion-model's sample/generate.py writes it: 'motion' (K, 22, 3, frames),
  one 'text' and 'lengths' entry per motion, index rep * num_samples + sample with
  num_samples = 1 prompt and num_repetitions = K samples.
  """
  joints = np.asarray(joints, np.float32)
  return {"motion": np.ascontiguousarray(joints.transpose(0, 2, 3, 1)),
          "text": [prompt] * len(joints), "lengths": np.asarray(lengths, np.int64),
          "num_samples": 1, "num_repetitions": int(len(joints))}


def save_mdm_results(directory: str, results: dict[str, Any]) -> str:
  """Writes results.npy (+ results.txt, results_len.txt as MDM does); returns the .npy path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "results.npy")
  np.save(path, results, allow_pickle=True)
  with open(os.path.join(directory, "results.txt"), "w") as f:
    f.write("\n".join(results["text"]))
  with open(os.path.join(directory, "results_len.txt"), "w") as f:
    f.write("\n".join(str(int(l)) for l in results["lengths"]))
  return path


def sample_prompts(workdir: str, prompts: Sequence[str], *, variant: str = "self_correcting",
                   generation: str = "last", num_samples: int = 4,
                   length_s: float | None = None, guidance: float = 2.5,
                   correct: bool = False, seed: int = 0, n: int | None = None,
                   synthetic_ratio: float | None = None, out_dir: str | None = None,
                   video_format: str = "mp4") -> dict[str, Any]:
  """Samples `num_samples` motions for every prompt and writes samples/<slug>/.

  Returns:
    {'generation': int, 'checkpoint': str, 'frames': int, 'prompts': {prompt: output
    directory}, 'unknown_words': {prompt: [words]}}.
  """
  config = load_run_config(workdir)
  if video_format not in VIDEO_FORMATS:
    raise errors.ConfigError(f"--video_format must be one of {VIDEO_FORMATS}, got "
                             f"{video_format!r}")
  vocab = text_lib.Vocabulary.load(os.path.join(workdir, "vocab.json"))
  prompts, unknown = check_prompts(prompts, int(config.text.max_len), vocab)
  if num_samples < 1:
    raise errors.ConfigError(f"--num_samples must be >= 1, got {num_samples}")
  state_dir, number = checkpoint_dir(workdir, config, variant, generation, n, synthetic_ratio)
  lo, hi = int(config.data.min_frames), int(config.data.max_frames)
  frames = hi if length_s is None else int(round(length_s * FPS))
  if not lo <= frames <= hi:
    raise errors.ConfigError(f"--length_s={length_s} is {frames} frames; the model was trained "
                             f"on {lo}..{hi} frames ({lo / FPS:g}..{hi / FPS:g} s)")
  with np.load(os.path.join(workdir, "normalization.npz")) as f:
    mean, std = f["mean"], f["std"]
  with config.unlocked():
    config.sampling.guidance = float(guidance)
  model = model_lib.MotionModel(config, vocab, mean, std)
  state = training.restore_train_state(state_dir, model.init(jax.random.PRNGKey(0)), config,
                                       vocab.size)

  captions = [p for p in prompts for _ in range(num_samples)]
  lengths = np.full((len(captions),), frames, np.int32)
  key = jax.random.PRNGKey(seed)
  sample_key, _ = jax.random.split(key)  # the second half once keyed the correction
  motions = model.sample_captions(state, captions, lengths, sample_key)
  jl = jnp.asarray(lengths)
  raw = np.asarray(model.denormalize(motions, jl))[:, :frames]
  joints = np.asarray(model.joints(motions, jl))[:, :frames]
  physics = _physics_rows(joints, lengths)
  fixed_raw = fixed_joints = fixed_physics = None
  info = None
  if correct:
    fixed, usable, info = correction.correct_motions(
        model, correction.corrector_params(config), motions, jl)
    fixed_raw = np.asarray(model.denormalize(fixed, jl))[:, :frames]
    fixed_joints = np.asarray(model.joints(fixed, jl))[:, :frames]
    fixed_physics = _physics_rows(fixed_joints, lengths)
    info = {k: np.asarray(v) for k, v in info.items()}
    info["usable"] = np.asarray(usable)

  out_dir = out_dir or os.path.join(workdir, "samples")
  written = {}
  used = set()
  for p, prompt in enumerate(prompts):
    name = slug(prompt)
    while name in used:
      name += "_"
    used.add(name)
    directory = os.path.join(out_dir, name)
    os.makedirs(directory, exist_ok=True)
    rows = slice(p * num_samples, (p + 1) * num_samples)
    np.save(os.path.join(directory, "features.npy"), raw[rows])
    np.save(os.path.join(directory, "joints.npy"), joints[rows])
    save_mdm_results(directory, mdm_results(joints[rows], prompt, lengths[rows]))
    report = {"prompt": prompt, "variant": variant, "generation": number,
              "checkpoint": state_dir, "seed": seed, "guidance": guidance,
              "length_s": frames / FPS, "unknown_words": unknown.get(prompt, []),
              "samples": []}
    if correct:
      np.save(os.path.join(directory, "corrected_features.npy"), fixed_raw[rows])
      np.save(os.path.join(directory, "corrected_joints.npy"), fixed_joints[rows])
      save_mdm_results(os.path.join(directory, "corrected"),
                       mdm_results(fixed_joints[rows], prompt, lengths[rows]))
    for i in range(num_samples):
      r = p * num_samples + i
      entry = {"index": i, "physics": physics[r]}
      clips, titles = [joints[r]], [f"{prompt} (#{i})"]
      if correct:
        entry["corrected_physics"] = fixed_physics[r]
        entry["corrector"] = {k: outputs.to_jsonable(v[r]) for k, v in info.items()
                              if np.ndim(v) >= 1 and len(v) == len(captions)}
        clips.append(fixed_joints[r])
        titles = [f"sampled #{i}: {prompt}", f"physics-corrected #{i}: {prompt}"]
      # MDM's file names: its renderers parse sample and repetition from them.
      base = os.path.join(directory, f"sample00_rep{i:02d}")
      render.render_motions(clips, titles, f"{base}.{video_format}", fps=FPS)
      viewer.write_viewer(f"{base}.html", clips, [t.split(":")[0] for t in titles],
                          groups=[0] * len(clips), title=f"{prompt} (#{i}, {variant}, "
                          f"generation {number})", group_titles=[prompt], fps=FPS)
      report["samples"].append(entry)
    outputs.write_json(os.path.join(directory, "physics.json"), report)
    written[prompt] = directory
  return {"generation": number, "checkpoint": state_dir, "frames": frames,
          "prompts": written, "unknown_words": unknown}


def _physics_rows(joints: np.ndarray, lengths: np.ndarray) -> list[dict[str, float]]:
  values = physics_metrics.physics_metrics(jnp.asarray(joints), jnp.asarray(lengths))
  values = {k: np.asarray(v) for k, v in values.items()}
  return [{k: float(v[i]) for k, v in values.items()} for i in range(len(lengths))]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  args = flags.FLAGS
  if not args.library_logs:
    outputs.quiet_console()
  try:
    if not args.workdir:
      raise errors.ConfigError("--workdir is required")
    if bool(args.text) == bool(args.prompts_file):
      raise errors.ConfigError("give exactly one of --text and --prompts_file")
    if args.prompts_file:
      try:
        with open(args.prompts_file) as f:
          prompts = [line for line in f if line.strip()]
      except OSError as e:
        raise errors.DataError(f"--prompts_file={args.prompts_file!r}: {e}") from e
    else:
      prompts = [args.text]
    result = sample_prompts(
        args.workdir, prompts, variant=args.variant, generation=args.generation,
        num_samples=args.num_samples, length_s=args.length_s, guidance=args.guidance,
        correct=args.correct, seed=args.seed, n=args.n, synthetic_ratio=args['lambda'].value,
        out_dir=args.out, video_format=args.video_format)
  except (errors.ConfigError, errors.DataError, errors.CheckpointError,
          errors.NonFiniteError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"{args.variant}, generation {result['generation']}, {result['frames']} frames "
        f"({result['frames'] / FPS:g} s)")
  for prompt, directory in result["prompts"].items():
    print(f"{prompt!r} -> {directory}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
