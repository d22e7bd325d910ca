r"""The Gaussian toy of Gillman et al. (2024), Sec. 6.1: theory made visible.

  python -m experiments.run --config=experiments/configs/gaussian.py --workdir=runs/gaussian

Presets: '' (the paper's settings, 16 seeds, plus a lambda x gamma stability grid; about a
minute on a 2-core CPU), 'smoke' (tiny, for tests), 'paper' (100 seeds, finer lambda grid).
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "gaussian"
  config.seed = 0
  config.num_seeds = 16
  config.dim = 2
  config.num_real = 50                       # n, real samples from p* = N(0, I)
  config.synthetic_ratio = 0.5               # lambda of the paper's figure (w2.png)
  # The lambda grid of stability.png and summary.json (synthetic_ratio is always included).
  config.synthetic_ratios = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5)
  config.gammas = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 5.0)
  config.num_generations = 500
  # 'histogram': the paper's rejection sampler from (1-t) hist + t p*; 'mixture': pi_gamma exactly.
  config.corrector = "histogram"
  config.accumulate = True                   # keep earlier synthetic sets, as the paper does
  config.histogram_bins = 10
  config.rejection_pool = 256
  config.last_window = 100                   # generations averaged in w2_last100_mean

  def smoke(c):
    c.num_seeds = 2
    c.num_generations = 30
    c.gammas = (0.0, 1.0, 5.0)
    c.synthetic_ratios = (0.5, 1.0)
    c.last_window = 10

  def paper(c):
    c.num_seeds = 100
    c.synthetic_ratios = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0)

  return common.apply_preset(config, arg, {"smoke": smoke, "paper": paper})
