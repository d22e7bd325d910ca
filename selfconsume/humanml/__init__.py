"""The motion experiment (the paper's HumanML3D one): MDM, physics correction, the evaluator.

  data              the run's datasets, the loop's examples (motion, length, every caption),
                    training batches, prompt draws, the run files (vocabulary, normalisation)
  mdm               the Flax MDM network, its noise schedule and sampler
  training          the MDM train state, the pure train step, fused steps, checkpoints and a
                    long fit's resumable progress
  model             MotionModel: MDM in the shapes of one run (init, fit, sample, joints)
  correction        the physics corrector on normalised motions, the physics part of a row
  evaluator         the text-motion evaluator (contrastive motion and text encoders), its cache
  evaluation        the text-to-motion protocol: FID, R-precision, matching, diversity, ...
  evaluator_record  which evaluator scored a run (evaluator.json, the workdir's copy)
  generation        the loop's pure stages (sample, correct, fit) and `build_components`, the
                    run's `sweep.Components`

One generation, top to bottom: `generation.build_components` loads the data
(`data.load_data`), builds `model.MotionModel` and the run's evaluator (`evaluator_record`);
its `generation` compiles the three stages of `generation.loop_stages`:
  sample   prompts drawn from the real set (`data.draw_prompts`), motions from
           `MotionModel.sample_in_program` (the sampler of `mdm.make_generate_fn`)
  correct  `correction.correct_motions`, then pi_gamma mixes corrected and sampled motions
  fit      `MotionModel.fit_in_program` -> `training.fit_in_program` (scans of `train_step`)
and its `evaluate` scores the new model with `evaluation.evaluate`.
"""
