"""The digits toy (the paper's MNIST experiment): data, U-Net DDPM, k-means corrector, LeNet.

  data        scikit-learn's 8x8 digits (default) or MNIST from local IDX / .npz files
  unet        the small class-conditional U-Net (eps prediction, a "no label" token)
  model       training state, the fitting loop over a loop.Buffer, guided sampling
  corrector   per-class k-means centres and the snapping correction with strength gamma
  classifier  the LeNet whose penultimate features give FID and diversity
  plots       sample grids and metric-vs-generation curves
"""
