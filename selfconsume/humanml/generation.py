"""One generation of the motion experiment, and the components a run is built from.

`loop_stages(config, model, n)` are the loop's sample, correct and fit for n real motions as
pure functions, which `selfconsume.loop.make_generation` compiles into one generation.
`build_components(config, workdir)` wires the data (humanml.data), MDM (humanml.model), the
physics corrector (humanml.correction) and the evaluator (humanml.evaluator_record,
humanml.evaluation) into the `sweep.Components` that `selfconsume.sweep` drives through
`selfconsume.loop.run_generation`.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selfconsume import loop
from selfconsume import parallel
from selfconsume import sweep
from selfconsume.errors import ConfigError
from selfconsume.errors import NonFiniteError
from selfconsume.humanml import correction
from selfconsume.humanml import data as data_lib
from selfconsume.humanml import evaluation
from selfconsume.humanml import evaluator_record
from selfconsume.humanml import model as model_lib
from selfconsume.humanml import training
from selfconsume.motion import render
from selfconsume.motion import viewer

# What a synthetic motion is trained with: 'all' captions of the real motion whose caption
# prompted it (the paper), or only that 'prompt'.
SYNTHETIC_CAPTIONS = ("all", "prompt")


def loop_stages(config: ml_collections.ConfigDict, model: model_lib.MotionModel, n: int
                ) -> tuple[loop.SampleFn, loop.CorrectFn, loop.FitFn]:
  """The loop's sample, correct and fit for n real motions: pure, jit-able functions that
  `loop.make_generation` compiles into one generation.

  sample: one prompt per synthetic slot, (motion, caption) pairs of the real buffer drawn
    without replacement; the motion keeps the prompting motion's length and, with
    config.loop.synthetic_captions = 'all' (the paper), all of its captions.
  correct: every motion physics-corrected (selfconsume.physics.corrector), then pi_gamma
    mixes corrected and sampled motions (gamma = config.correction.gamma).
  fit: config.train.generation_steps fine-tuning steps, padded to the training set of the
    largest lambda, with a fresh AdamW when config.train.fresh_optimizer.
  """
  gamma = float(config.correction.gamma)
  synthetic_captions = str(config.loop.synthetic_captions)
  if synthetic_captions not in SYNTHETIC_CAPTIONS:
    raise ConfigError(f"config.loop.synthetic_captions must be one of {SYNTHETIC_CAPTIONS}, "
                      f"got {synthetic_captions!r}")
  sizes = [int(size) for size in config.loop.sizes]
  steps = int(config.train.generation_steps[sizes.index(n)])

  def sample_fn(state, real: loop.Buffer, previous: loop.Buffer, key) -> loop.Buffer:
    count = previous.capacity
    prompt_key, sample_key = jax.random.split(key)
    rows, slots = data_lib.draw_prompts(prompt_key, real, count)
    ids = real.data["text_ids"][rows, slots]
    lengths = real.data["lengths"][rows]
    motions = model.sample_in_program(state.sampling_params(), ids, ids > 0, lengths,
                                      sample_key)
    if synthetic_captions == "all":
      # The paper trains each synthetic motion with every caption of the real motion whose
      # caption prompted it.
      text_ids = real.data["text_ids"][rows]
      num_captions = real.data["num_captions"][rows]
    else:
      text_ids = jnp.zeros((count,) + real.data["text_ids"].shape[1:], jnp.int32)
      text_ids = text_ids.at[:, 0].set(ids)
      num_captions = jnp.ones((count,), jnp.int32)
    return loop.make_buffer({"motion": motions, "lengths": lengths, "text_ids": text_ids,
                             "text_mask": text_ids > 0, "num_captions": num_captions})

  def correct_fn(key, buffer: loop.Buffer):
    lengths = buffer.data["lengths"]
    # The first half of the split once keyed the corrector's own mixing; the mixing key
    # stays the second half so runs keep drawing what they drew.
    _, mix_key = jax.random.split(key)
    fixed, usable, info = correction.correct_motions(
        model, correction.corrector_params(config), buffer.data["motion"], lengths)
    mixed, replaced = loop.replace_with_probability(mix_key, buffer.data["motion"], fixed,
                                                    gamma)
    # A motion drawn for correction that the corrector dropped (not finite under
    # nonfinite='drop', not realisable under failsafe_unrealisable='drop') leaves the
    # training data: the generation fits fewer synthetic motions.
    dropped = replaced & ~jnp.asarray(info["keep"], bool)
    out = loop.Buffer(data=dict(buffer.data, motion=mixed), valid=buffer.valid & ~dropped)
    # Corrected: drawn by pi_gamma, simulated to a finite end, and taken by the corrector
    # (under failsafe_unrealisable='original' a motion that needed a reset comes back as
    # sampled; `realisable` says how many needed none).
    per_motion = {"tracking_error_m": info["tracking_error_m"], "fall_rate": info["fell"],
                  "corrected_fraction": replaced & usable & info["replaced"],
                  "dropped_fraction": dropped}
    # The fail-safe's account: resets per motion, the share of frames imitated without one.
    for name in correction.CORRECTION_INFO:
      if name in info:
        per_motion[name] = info[name]
    if "nonfinite" in info:
      per_motion["nonfinite_rate"] = info["nonfinite"]
    return out, correction.mean_and_interval(per_motion)

  def fit_fn(state, training_set: loop.Buffer, key):
    return model.fit_in_program(state, training_set, key, steps, fit_capacity(config, n))

  return sample_fn, correct_fn, fit_fn


def fit_capacity(config: ml_collections.ConfigDict, n: int) -> int:
  """n real + floor(max lambda * n) synthetic slots: every training set of size n fits, and
  padding to it gives generation 0 and every variant's fit one batch shape."""
  return n + max(loop.num_synthetic(float(r), n) for r in config.loop.lambdas)


def build_components(config: ml_collections.ConfigDict, workdir: str) -> sweep.Components:
  """The motion experiment's `sweep.Components`: MDM, the physics corrector, the evaluator."""

  data = data_lib.load_data(config, workdir)
  data_lib.write_run_files(workdir, config, data)
  model = model_lib.MotionModel(config, data.vocab, data.train.mean, data.train.std)
  normalization = {"mean": np.asarray(data.train.mean, np.float32),
                   "std": np.asarray(data.train.std, np.float32)}
  # The run's evaluator: a copy kept in the workdir and recorded in evaluator.json
  # (fingerprint, training data, real-vs-real FID), so every number traces back to it.
  evaluator = evaluator_record.load_or_train(
      workdir, data.train, config.eval.evaluator, config.eval.evaluator_cache or None,
      log_dir=os.path.join(workdir, "tensorboard", "evaluator"))
  eval_config = evaluation.resolve_config(config.eval)
  eval_config.generate_batch_size = model.batch_size
  evaluator_record.record(workdir, evaluator, data.test, eval_config)
  sizes = [int(size) for size in config.loop.sizes]
  stages = functools.cache(lambda n: loop_stages(config, model, n))
  physics = functools.cache(lambda: correction.corrector_params(config))

  subsets: dict[int, loop.Buffer] = {}

  def real_buffer(n: int) -> loop.Buffer:
    if n not in subsets:
      subsets[n] = data_lib.real_examples(config, data, n)
    return subsets[n]

  def synthetic_buffer(n: int, ratio: float) -> loop.Buffer:
    like = jax.tree.map(lambda x: x[:1], real_buffer(n).data)
    return loop.empty_buffer(like, loop.num_synthetic(ratio, n))

  def check_prompts(n: int, ratio: float) -> None:
    count = loop.num_synthetic(ratio, n)
    pairs = data_lib.num_prompts(real_buffer(n))
    if count > pairs:
      raise ConfigError(f"lambda * n = {count} synthetic motions need as many distinct "
                        f"training captions, but the {n} real motions have {pairs}")

  programs: dict[tuple[int, float, str, bool], loop.GenerationFn] = {}

  def generation(n: int, ratio: float, variant: str, fused: bool | None = None):
    """The compiled generation of one run (one program when fused; config.loop.fused)."""
    fused = bool(config.loop.fused) if fused is None else fused
    if (n, ratio, variant, fused) not in programs:
      check_prompts(n, ratio)
      sample_fn, correct_fn, fit_fn = stages(n)
      programs[n, ratio, variant, fused] = loop.make_generation(
          variant=variant, sample_fn=sample_fn, correct_fn=correct_fn, fit_fn=fit_fn,
          fused=fused)
    run = programs[n, ratio, variant, fused]

    def run_checked(state: loop.LoopState):
      # The same placement computed or restored: a resumed run reuses the compiled program.
      state = parallel.place(state, model.mesh)
      state, metrics, sampled = run(state)
      metrics = jax.device_get(metrics)
      if "fit_losses" in metrics:  # the mean in float64, as the host fit sums its losses
        metrics["train_loss"] = float(np.mean(np.asarray(metrics["fit_losses"], np.float64)))
      # What the host checks once the program is done (the program itself never waits).
      if int(metrics.pop("fit_nonfinite")):
        raise NonFiniteError(f"{variant} generation {int(state.generation)}: a training "
                             "loss or gradient became non-finite")
      if sampled is not None and not bool(jnp.all(jnp.isfinite(sampled.data["motion"]))):
        raise NonFiniteError("MDM sampling produced NaN/inf motions")
      return state, metrics, sampled

    return run_checked

  jitted_sample = functools.cache(lambda n: jax.jit(stages(n)[0]))

  def sample(state, template: loop.Buffer, key, n, ratio) -> loop.Buffer:
    check_prompts(n, ratio)
    return jitted_sample(n)(state, real_buffer(n), template, key)

  def fit(state, buffer: loop.Buffer, key, steps: int, *, checkpoint_dir=None, log=None):
    # Fits on n real motions: generation 0 (an eager fit: progress bar, checkpoints,
    # resume); the loop's generations fit inside their compiled program.
    if config.train.fresh_optimizer:
      state = training.fresh_optimizer(state)
    return model.fit(state, buffer, key, steps, capacity=fit_capacity(config, buffer.capacity),
                     checkpoint_dir=checkpoint_dir, log=log)

  def evaluate(state, key) -> dict[str, Any]:
    captured: list[tuple[np.ndarray, np.ndarray]] = []

    def generate_fn(captions, lengths, gen_key):
      motions = model.sample_captions(state, captions, lengths, gen_key)
      captured.append((np.asarray(motions), np.asarray(lengths)))
      return np.asarray(motions)

    scores = evaluation.evaluate(generate_fn, data.test, evaluator, key, eval_config)
    # Physics of the first replication's generations (one per prompt).
    num = int(scores.get("num_samples", eval_config.num_samples))
    motions = np.concatenate([m for m, _ in captured])[:num]
    lengths = np.concatenate([l for _, l in captured])[:num]
    physics = correction.physics_summary(
        model.joints(jnp.asarray(motions), jnp.asarray(lengths)), jnp.asarray(lengths))
    row = {"fid": scores["fid"],
           "r_precision": [scores["r_precision_top1"], scores["r_precision_top2"],
                           scores["r_precision_top3"]],
           "matching": scores["matching_score"], "diversity": scores["diversity"],
           "multimodality": scores.get("multimodality")}
    row.update(physics)
    for name, value in scores.items():
      if name.startswith("real_") or name.endswith("_ci95"):
        row[name.replace("matching_score", "matching")] = value
    return row

  def score_synthetic(buffer: loop.Buffer) -> dict[str, Any]:
    # The physics of the synthetic motions the generation fitted (corrected ones where the
    # variant corrects), mean and interval over the buffer's valid motions: synthetic_float_mm,
    # synthetic_penetrate_mm, synthetic_skate, synthetic_jerk (and *_ci95).
    valid = np.asarray(buffer.valid)
    if not valid.any():
      return {}
    lengths = buffer.data["lengths"]
    summary = correction.physics_summary(model.joints(buffer.data["motion"], lengths), lengths,
                                         valid=valid)
    return {f"synthetic_{name}": value for name, value in summary.items()}

  def correction_floor(key) -> dict[str, Any]:
    real = evaluation.real_motion_generator(data.test)
    infos: list[Mapping[str, Any]] = []
    corrected: list[tuple[np.ndarray, np.ndarray]] = []

    # Called on the host, the corrector runs every evaluation batch through its standalone
    # compiled rollout (the program the diagnostics and the tests also load), not a copy
    # compiled into a program of the floor's own.
    correct_batch = functools.partial(correction.correct_motions, model, physics())

    def generate_fn(captions, lengths, key):
      del key  # the correction is deterministic
      lengths = jnp.asarray(lengths)
      fixed, _, info = correct_batch(jnp.asarray(real(captions, lengths, None)), lengths)
      infos.append(info)
      corrected.append((np.asarray(fixed), np.asarray(lengths)))
      return np.asarray(fixed)

    floor_config = eval_config.copy_and_resolve_references()
    floor_config.multimodality_prompts = 0  # real motions have one version per caption
    floor_config.num_repeats = 1
    scores = evaluation.evaluate(generate_fn, data.test, evaluator, key, floor_config)
    # The last batch is padded by repeating prompts: keep one motion per prompt.
    num = int(scores["num_samples"])
    motions = np.concatenate([m for m, _ in corrected])[:num]
    lengths = np.concatenate([l for _, l in corrected])[:num]
    physics_after = correction.physics_summary(
        model.joints(jnp.asarray(motions), jnp.asarray(lengths)), jnp.asarray(lengths))
    stack = lambda name: np.concatenate(
        [np.asarray(i[name], np.float32) for i in infos])[:num]
    out = {name: float(scores[name]) for name in (
        "fid", "r_precision_top1", "r_precision_top2", "r_precision_top3", "matching_score",
        "diversity", "real_fid") + tuple(k for k in ("fid_ci95",) if k in scores)}
    out.update({k: physics_after[k] for k in ("float_mm", "penetrate_mm", "skate")})
    out.update(tracking_error_m=float(stack("tracking_error_m").mean()),
               fall_rate=float(stack("fell").mean()), num_samples=int(len(lengths)))
    out.update({name: float(stack(name).mean()) for name in correction.CORRECTION_INFO
                if all(name in i for i in infos)})
    return out

  def render_prompts(state, key, path):
    captions = list(config.outputs.video_prompts)
    frames = min(model.max_frames, int(config.outputs.get("video_frames", 80)))
    lengths = np.full((len(captions),), frames, np.int32)
    motions = model.sample_captions(state, captions, lengths, key)
    joints = np.asarray(model.joints(motions, jnp.asarray(lengths)))
    _render([joints[i, :frames] for i in range(len(captions))], captions, path, config)

  def render_correction(before: loop.Buffer, after: loop.Buffer, path):
    count = min(int(config.outputs.correction_videos), before.capacity)
    lengths = before.data["lengths"][:count]
    joints_before = np.asarray(model.joints(before.data["motion"][:count], lengths))
    joints_after = np.asarray(model.joints(after.data["motion"][:count], lengths))
    clips, captions = [], []
    for i in range(count):
      caption = data_lib.decode_caption(data.vocab, np.asarray(before.data["text_ids"][i, 0]))
      length = int(lengths[i])
      clips += [joints_before[i, :length], joints_after[i, :length]]
      captions += [f"sampled: {caption}", f"corrected: {caption}"]
    _render(clips, captions, path, config, groups=[i // 2 for i in range(len(clips))])

  return sweep.Components(
      real_buffer=real_buffer, synthetic_buffer=synthetic_buffer, init=model.init, fit=fit,
      # `correct` runs on the host (diagnostics; the loop corrects inside its generation's
      # program): eagerly, so it loads the corrector's standalone compiled rollout.
      sample=sample, correct=stages(sizes[0])[1], evaluate=evaluate, generation=generation,
      save=lambda directory, state: training.save_train_state(
          directory, state, config, data.vocab.size, normalization),
      restore=lambda directory, template: training.restore_train_state(
          directory, template, config, data.vocab.size),
      render_prompts=render_prompts,
      render_correction=render_correction,
      correction_floor=correction_floor, score_synthetic=score_synthetic, resumable_fit=True)


def _render(clips: list[np.ndarray], captions: list[str], path: str,
            config: ml_collections.ConfigDict, groups: Sequence[int] | None = None) -> None:
  """`path`.mp4 (or .gif) of the clips side by side, and `path`.html, their interactive
  3-D view (clips of one group overlaid: a sample and its correction). Process 0 alone
  writes them under jax.distributed (the clips were sampled on every process)."""
  if not parallel.is_file_writer():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  render.render_motions(clips, captions, f"{path}.{config.outputs.video_format}", fps=20)
  group_titles = None
  if groups is not None:
    group_titles = [next(c.split(": ", 1)[-1] for c, g in zip(captions, groups) if g == k)
                    for k in sorted(set(groups))]
  viewer.write_viewer(f"{path}.html", clips, [c.split(": ", 1)[0] for c in captions]
                      if groups is not None else captions, groups=groups,
                      title=os.path.basename(path), group_titles=group_titles, fps=20)
