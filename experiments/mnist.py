"""The digits toy loop (the paper's MNIST experiment) on scikit-learn's 8x8 digits or MNIST.

For each seed: fit k-means centres per class on the n real images, train the generation-0
DDPM on them, then run every variant (baseline once, with lambda = 0; self_consuming and
self_correcting for each lambda) for `num_generations` generations of
`selfconsume.loop.run_generation`. After every generation the model is scored by FID and
diversity of the LeNet features of `eval.num_samples` guided samples against the real test
images, a row goes to metrics.jsonl, a sample grid to samples/, and the loop state to
checkpoints/ (atomically), so a crashed run resumes at the last finished generation.

Workdir:
  metrics.jsonl            one row per variant x lambda x seed x generation
  summary.json             final and mean FID / diversity per variant and lambda, the check
                           the issue asks for, the data and classifier facts
  fid.png, diversity.png   metric vs generation, one panel per lambda
  kmeans_centres.png       the corrector's centres (rows: classes)
  samples/RUN/gen_XXX.png  eval samples per generation (rows: classes)
  classifier.*             the cached LeNet
  checkpoints/NAME/        the loop state of each run (selfconsume.checkpoint: orbax, step =
                           generation, fingerprint = the config hash), generation0_seedS/ the
                           shared generation 0 with its metrics
  tensorboard/RUN          scalars per run
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from experiments.configs import mnist as mnist_config
from selfconsume import checkpoint
from selfconsume import diffusion
from selfconsume import loop
from selfconsume import metric_writers
from selfconsume import outputs
from selfconsume import parallel
from selfconsume import validation
from selfconsume import workdir as workdir_lib
from selfconsume.digits import classifier as classifier_lib
from selfconsume.digits import corrector as corrector_lib
from selfconsume.digits import data as data_lib
from selfconsume.digits import model as model_lib
from selfconsume.digits import plots
from selfconsume.digits.unet import ConditionalUNet
from selfconsume.errors import CheckpointError
from selfconsume.errors import ConfigError
from selfconsume.metrics.diversity import diversity as diversity_metric
from selfconsume.metrics.fid import fid as fid_metric

# Config fields that may change when a run is resumed: they add work, not change it.
_RESUMABLE_FIELDS = ("num_seeds", "preset", "loop")


def _config_hash(config: ml_collections.ConfigDict) -> str:
  settings = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_FIELDS}
  text = json.dumps(outputs.to_jsonable(settings), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _validate(config: ml_collections.ConfigDict) -> None:
  for variant in config.loop.variants:
    if variant not in loop.VARIANTS:
      raise ConfigError(f"config.loop.variants: {variant!r} is not one of {loop.VARIANTS}")
  for lam in config.loop.lambdas:
    if lam <= 0:
      raise ConfigError(f"config.loop.lambdas must be > 0 (the baseline is lambda = 0), "
                        f"got {lam}")
  if config.loop.num_generations < 0:
    raise ConfigError(f"config.loop.num_generations must be >= 0, got "
                      f"{config.loop.num_generations}")
  if config.num_seeds < 1:
    raise ConfigError(f"config.num_seeds must be >= 1, got {config.num_seeds}")
  if config.corrector.gamma < 0:
    raise ConfigError(f"config.corrector.gamma must be >= 0, got {config.corrector.gamma}")
  if config.eval.num_samples < max(2, config.eval.diversity_pairs):
    raise ConfigError(f"config.eval.num_samples ({config.eval.num_samples}) must be >= "
                      f"eval.diversity_pairs ({config.eval.diversity_pairs})")


def _pad_buffer(buffer: loop.Buffer, capacity: int) -> loop.Buffer:
  """`buffer` grown to `capacity` slots with invalid zeros (one compile for every lambda)."""
  if buffer.capacity == capacity:
    return buffer
  return loop.concat(buffer, loop.empty_buffer(buffer.data, capacity - buffer.capacity))


def _fingerprint(config_hash: str) -> dict[str, str]:
  """What a loop-state checkpoint must match to be resumed: the config hash of the run."""
  return {"config_hash": config_hash}


def _restore_state(path: str, template: Any, config_hash: str
                   ) -> tuple[Any, dict[str, Any]] | None:
  """The state saved in checkpoint directory `path` (shaped like `template`) and its extra
  metadata, or None before its first save. A one-line CheckpointError when it is corrupt or
  of another config."""
  if os.path.exists(path + ".msgpack"):
    # The flax msgpack file of earlier versions: refused rather than silently retrained, as
    # the workdir's rows already continue from it.
    raise CheckpointError(f"{path}.msgpack: a checkpoint in the msgpack format of an earlier "
                          "version of this code; use a new --workdir")
  if checkpoint.latest_step(path) is None:
    return None
  state = checkpoint.restore(path, template, _fingerprint(config_hash))
  return state, checkpoint.read_meta(path)[1]


class _Evaluator:
  """FID / diversity / label accuracy of guided samples, on LeNet features vs the test set."""

  def __init__(self, config, data: data_lib.DigitsData, apply_fn, classifier_params,
               sample_images):
    self.config = config
    self.apply_fn = apply_fn
    self.classifier_params = classifier_params
    self.sample_images = sample_images
    self.num_classes = data.num_classes
    _, self.test_features = classifier_lib.embed(apply_fn, classifier_params, data.test_images)
    # Labels 0, 1, ..., 9, 0, 1, ...: class-balanced, and row c of the grid is class c.
    self.labels = model_lib.balanced_labels(config.eval.num_samples, data.num_classes)

  def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return classifier_lib.embed(self.apply_fn, self.classifier_params, images)

  def __call__(self, params, key: jax.Array, seed: int) -> tuple[dict[str, float], np.ndarray]:
    images = self.sample_images(params, self.labels, key)
    logits, feats = self.features(images)
    metrics = {
        "fid": fid_metric(feats, self.test_features),
        "diversity": diversity_metric(feats, np.random.default_rng(seed),
                                      self.config.eval.diversity_pairs),
        "label_accuracy": float(np.mean(np.argmax(logits, -1) == self.labels)),
    }
    return metrics, images

  def grid(self, images: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Rows = classes, columns = the first grid_per_class samples of each."""
    per_class = min(self.config.eval.grid_per_class,
                    self.config.eval.num_samples // self.num_classes)
    index = [c + self.num_classes * j for c in range(self.num_classes) for j in range(per_class)]
    return images[np.asarray(index)], self.num_classes, per_class


def _summarise(rows: list[dict[str, Any]], config, extra: dict[str, Any]) -> dict[str, Any]:
  """Per variant and lambda: FID / diversity at generation 0, at the end, and averaged."""
  # Keep the last row per key: a crash between appending a row and checkpointing repeats it.
  latest = {}
  for r in rows:
    latest[(r["variant"], r["lambda"], r["seed"], r["generation"])] = r
  rows = list(latest.values())
  runs = {}
  for (variant, lam) in sorted({(r["variant"], r["lambda"]) for r in rows}):
    selected = [r for r in rows if r["variant"] == variant and r["lambda"] == lam]
    seeds = sorted({r["seed"] for r in selected})
    last_gen = max(r["generation"] for r in selected)
    finals = [r for r in selected if r["generation"] == last_gen]
    later = [r for r in selected if r["generation"] >= 1]
    per_seed_final = {r["seed"]: r["fid"] for r in finals}
    runs[f"{variant}/lambda={lam}"] = {
        "variant": variant, "lambda": lam, "seeds": seeds, "last_generation": last_gen,
        "final_fid_mean": float(np.mean([r["fid"] for r in finals])),
        "final_fid_std": float(np.std([r["fid"] for r in finals])),
        "final_fid_per_seed": per_seed_final,
        "mean_fid_over_generations": (float(np.mean([r["fid"] for r in later]))
                                      if later else None),
        "final_diversity_mean": float(np.mean([r["diversity"] for r in finals])),
        "generation0_fid_mean": float(np.mean([r["fid"] for r in selected
                                               if r["generation"] == 0])),
    }
  checks = {}
  base = runs.get("baseline/lambda=0.0")
  for lam in config.loop.lambdas:
    consuming = runs.get(f"self_consuming/lambda={lam}")
    correcting = runs.get(f"self_correcting/lambda={lam}")
    if not (base and consuming and correcting):
      continue
    checks[f"lambda={lam}"] = {
        "final_fid": {"baseline": base["final_fid_mean"],
                      "self_consuming": consuming["final_fid_mean"],
                      "self_correcting": correcting["final_fid_mean"]},
        "mean_fid_over_generations": {
            "baseline": base["mean_fid_over_generations"],
            "self_consuming": consuming["mean_fid_over_generations"],
            "self_correcting": correcting["mean_fid_over_generations"]},
        "self_consuming_above_baseline": (consuming["final_fid_mean"] >
                                          base["final_fid_mean"]),
        "self_correcting_below_self_consuming": (correcting["final_fid_mean"] <
                                                 consuming["final_fid_mean"]),
    }
  return {"runs": runs, "checks": checks, **extra}


def _runs(config: ml_collections.ConfigDict) -> list[tuple[str, float]]:
  """(variant, lambda) pairs of one seed; baseline once, with lambda 0."""
  return ([("baseline", 0.0)] if "baseline" in config.loop.variants else []) + [
      (variant, float(lam)) for lam in config.loop.lambdas
      for variant in config.loop.variants if variant != "baseline"]


def finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether every seed, variant and lambda has its last generation and summary.json exists."""
  if not os.path.exists(os.path.join(workdir, "summary.json")):
    return False
  done = {(r["variant"], float(r["lambda"]), r["seed"])
          for r in outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
          if r.get("generation", -1) >= config.loop.num_generations}
  return all((variant, lam, seed) in done for variant, lam in _runs(config)
             for seed in range(config.seed, config.seed + config.num_seeds))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the digits loop described by `config`, writing into `workdir`; returns the summary.

  The config and the workdir are checked before any work (selfconsume.validation,
  selfconsume.workdir): a rerun continues only the run its workdir holds.
  """
  validation.validate_with(config, mnist_config.get_config, validation.mnist)
  with workdir_lib.claim(workdir, config, workdir_lib.mnist_dataset(config)):
    if finished(config, workdir):
      return workdir_lib.report_finished(
          workdir, f"{config.loop.num_generations} generations of {len(_runs(config))} runs "
          f"x {config.num_seeds} seeds", ("summary.json", "metrics.jsonl", "fid.png"))
    return _run(config, workdir)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  _validate(config)
  start_time = time.time()
  config_hash = _config_hash(config)
  # Refuse a workdir that holds results of another config before any work (each checkpoint
  # checks it too); a run that failed before its first result leaves nothing to protect.
  config_path = os.path.join(workdir, "config.json")
  if os.path.exists(config_path) and os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    previous = outputs.read_json(config_path).get("config_hash")
    if previous != config_hash:
      raise CheckpointError(f"{workdir} holds a run of a different config (hash {previous} "
                            f"!= {config_hash}, see {config_path}); use a new --workdir")
  outputs.write_json(config_path, {"config_hash": config_hash, "config": config.to_dict()})
  data = data_lib.load(config.data.source, config.data.path,
                       test_fraction=config.data.test_fraction, pad_to=config.data.pad_to,
                       seed=config.seed)
  image_shape = data.image_shape
  levels = len(config.model.multipliers) - 1
  if image_shape[0] % (2 ** levels) or image_shape[1] % (2 ** levels):
    raise ConfigError(f"images of {image_shape[0]}x{image_shape[1]} cannot be halved "
                      f"{levels} times (config.model.multipliers); set config.data.pad_to")

  classifier_params, classifier_info = classifier_lib.get_or_train(
      data, workdir, steps=config.classifier.steps, batch_size=config.classifier.batch_size,
      learning_rate=config.classifier.learning_rate, features=config.classifier.features,
      seed=config.seed)
  apply_fn = classifier_lib.make_apply(data.num_classes, config.classifier.features)

  model = ConditionalUNet(num_classes=data.num_classes, features=config.model.features,
                          multipliers=tuple(config.model.multipliers))
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_steps,
                                     config.diffusion.beta_start, config.diffusion.beta_end)
  fit = model_lib.make_fit(model, schedule, batch_size=config.train.batch_size,
                           label_dropout=config.diffusion.label_dropout)
  sample_images = model_lib.make_sampler(
      model, schedule, image_shape=image_shape, guidance=config.diffusion.guidance,
      method=config.sampling.method, num_steps=config.sampling.num_steps,
      eta=config.sampling.eta, chunk_size=config.sampling.chunk_size)
  evaluate = _Evaluator(config, data, apply_fn, classifier_params, sample_images)
  _, train_features = evaluate.features(data.train_images)
  metrics = metric_writers.MetricsWriter(workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  extra: dict[str, Any] = {
      "data": {"source": data.source, "train_images": int(data.train_images.shape[0]),
               "test_images": int(data.test_images.shape[0]), "image_shape": image_shape},
      "classifier_test_accuracy": classifier_info["test_accuracy"],
      # FID of real training images against the real test images: the floor of this metric.
      "fid_real_train_vs_test": fid_metric(train_features, evaluate.test_features),
  }

  for seed in range(config.seed, config.seed + config.num_seeds):
    images, labels = data_lib.subsample(data.train_images, data.train_labels,
                                        config.data.train_fraction, seed)
    n = int(labels.shape[0])
    extra["n_real"] = n
    centres = corrector_lib.fit_centres(images, labels, data.num_classes,
                                        config.corrector.clusters_per_class, seed)
    plots.save_grid(os.path.join(workdir, f"kmeans_centres_seed{seed}.png"),
                    centres.reshape((-1,) + image_shape), data.num_classes,
                    config.corrector.clusters_per_class)
    correct_fn = corrector_lib.make_correct_fn(centres, config.corrector.gamma)
    real = loop.make_buffer({"image": jnp.asarray(images), "label": jnp.asarray(labels)})
    capacity = n + max([loop.num_synthetic(lam, n) for lam in config.loop.lambdas] + [0])
    seed_key = jax.random.PRNGKey(seed)
    eval_key = jax.random.fold_in(seed_key, 1)  # the same noise every generation

    # Generation 0: the model fitted on the real images, shared by every variant.
    gen0_path = os.path.join(ckpt_dir, f"generation0_seed{seed}")
    template = model_lib.create_train_state(jax.random.fold_in(seed_key, 2), model,
                                            image_shape)
    restored = _restore_state(gen0_path, template, config_hash)
    if restored is None:
      t0 = time.time()
      gen0_state, fit_metrics = fit(template, _pad_buffer(real, capacity),
                                    jax.random.fold_in(seed_key, 3), config.train.gen0_steps,
                                    config.train.gen0_lr, 0.0)
      # Committed to the device as a restored state is: a resumed run then finds the programs
      # this one compiles in the compilation cache (see parallel.place).
      gen0_state = parallel.place(gen0_state, None)
      gen0_metrics, gen0_images = evaluate(gen0_state.params, eval_key, seed)
      gen0_metrics.update(fit_metrics, seconds=time.time() - t0)
      checkpoint.save(gen0_path, gen0_state, _fingerprint(config_hash),
                      {"generation": 0, "metrics": gen0_metrics}, step=0)
    else:
      gen0_state, meta = restored
      gen0_metrics = meta["metrics"]

    runs = ([("baseline", 0.0)] if "baseline" in config.loop.variants else []) + [
        (variant, float(lam)) for lam in config.loop.lambdas
        for variant in config.loop.variants if variant != "baseline"]
    for variant, lam in runs:
      name = f"{variant}_lambda{lam}_seed{seed}"
      m = loop.num_synthetic(lam, n)
      state = loop.init_state(
          gen0_state, real,
          loop.empty_buffer({"image": real.data["image"][:1], "label": real.data["label"][:1]},
                            m),
          jax.random.fold_in(seed_key, 1000 + runs.index((variant, lam))))
      path = os.path.join(ckpt_dir, name)
      restored = _restore_state(path, state, config_hash)
      state = parallel.place(state if restored is None else restored[0], None)
      start_generation = int(state.generation)
      base_row = {"variant": variant, "lambda": lam, "seed": seed, "n_real": n,
                  "n_synthetic": m if variant != "baseline" else 0}
      if start_generation == 0:
        metrics.rows([{**base_row, "generation": 0, **gen0_metrics}])

      def sample_fn(train_state, real: loop.Buffer, previous: loop.Buffer, key: jax.Array
                    ) -> loop.Buffer:
        del real  # unconditional in the data: labels are drawn balanced
        label_key, image_key = jax.random.split(key)
        labels = model_lib.balanced_labels(previous.capacity, data.num_classes, label_key)
        images = sample_images(train_state.params, labels, image_key)
        return loop.make_buffer({"image": jnp.asarray(images), "label": jnp.asarray(labels)})

      def fit_fn(train_state, training_set: loop.Buffer, key: jax.Array):
        steps = model_lib.steps_per_epochs(int(training_set.size), config.train.batch_size,
                                           config.train.finetune_epochs)
        return fit(train_state, _pad_buffer(training_set, capacity), key, steps,
                   config.train.finetune_lr, config.train.finetune_lr)

      progress = tqdm.trange(start_generation + 1, config.loop.num_generations + 1,
                             desc=name, leave=False)
      for generation in progress:
        t0 = time.time()
        state, loop_metrics = loop.run_generation(
            state, variant=variant, sample_fn=sample_fn, correct_fn=correct_fn, fit_fn=fit_fn)
        eval_metrics, eval_images = evaluate(state.train_state.params, eval_key, seed)
        row = {**base_row, "generation": generation, **eval_metrics,
               **{k: float(v) for k, v in loop_metrics.items()},
               "seconds": time.time() - t0}
        metrics.rows([row])
        metrics.scalars(generation, {key: row[key] for key in (
            "fid", "diversity", "label_accuracy", "loss")}, run=name)
        grid, rows_, cols = evaluate.grid(eval_images)
        plots.save_grid(os.path.join(workdir, "samples", name, f"gen_{generation:03d}.png"),
                        grid, rows_, cols)
        # Step = generation; the previous one is deleted only once this one is complete.
        checkpoint.save(path, state, _fingerprint(config_hash), {"generation": generation},
                        step=generation)
        progress.set_postfix(fid=f"{row['fid']:.3f}")
  metrics.close()

  rows = outputs.read_jsonl(metrics.jsonl_path)
  extra["seconds_this_invocation"] = time.time() - start_time
  extra["config"] = config.to_dict()
  summary = _summarise(rows, config, extra)
  outputs.write_json(os.path.join(workdir, "summary.json"), summary)
  variants = [v for v in loop.VARIANTS if v in config.loop.variants]
  for metric in ("fid", "diversity"):
    plots.plot_curves(os.path.join(workdir, f"{metric}.png"), rows, metric,
                      config.loop.lambdas, variants)
  return summary
