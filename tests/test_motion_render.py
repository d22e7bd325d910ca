"""Stick-figure rendering: a gif of four motions side by side whose frames change."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from selfconsume.data import procedural
from selfconsume.motion import render


def test_render_four_motions_gif(tmp_path):
  rng = np.random.default_rng(0)
  motions, captions = [], []
  for _ in range(4):
    joints, caps, _ = procedural.sample_motion(rng)
    motions.append(joints[::8][:8])   # a few frames keep the test fast
    captions.append(caps[0])
  path = render.render_motions(motions, captions, str(tmp_path / "four.gif"), fps=5, dpi=30)
  assert path.endswith(".gif")
  with Image.open(path) as gif:
    assert gif.n_frames == max(len(m) for m in motions)
    gif.seek(0)
    first = np.asarray(gif.convert("L"), np.float32)
    gif.seek(gif.n_frames - 1)
    last = np.asarray(gif.convert("L"), np.float32)
  assert first.shape[1] > 2 * first.shape[0]   # four panels side by side
  assert np.abs(first - last).mean() > 0.01


def test_render_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match="captions"):
    render.render_motions([np.zeros((3, 22, 3))], ["a", "b"], str(tmp_path / "x.gif"))
  with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
    render.render_motions([np.zeros((3, 21, 3))], ["a"], str(tmp_path / "x.gif"))
  with pytest.raises(ValueError, match=".gif or .mp4"):
    render.render_motions([np.zeros((3, 22, 3))], ["a"], str(tmp_path / "x.png"))
