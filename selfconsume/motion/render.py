"""Stick-figure animations of joint sequences (matplotlib -> .gif, or .mp4 when ffmpeg exists).

Several motions are drawn side by side, each in its own 3-D panel with a ground grid, its
caption as the title, and the root's ground trajectory. Shorter motions hold their last frame.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib import animation  # noqa: E402
import numpy as np  # noqa: E402

from selfconsume.motion import skeleton  # noqa: E402

_HALF_WIDTH = 1.2   # metres shown either side of the root
_GRID_LINES = 7
# Right leg, left leg, spine, right arm, left arm (the order of KINEMATIC_CHAINS).
_CHAIN_COLORS = ("#d62728", "#1f77b4", "#2c2c2c", "#ff7f0e", "#17becf")


def _check(joints: Sequence[np.ndarray], captions: Sequence[str], path: str) -> list[np.ndarray]:
  if len(joints) == 0:
    raise ValueError("render_motions needs at least one motion")
  if len(captions) != len(joints):
    raise ValueError(f"got {len(joints)} motions but {len(captions)} captions")
  out = []
  for i, j in enumerate(joints):
    j = np.asarray(j, np.float32)
    if j.ndim != 3 or j.shape[1:] != (skeleton.NUM_JOINTS, 3) or len(j) == 0:
      raise ValueError(f"motion {i}: expected joints of shape (T, 22, 3), got {j.shape}")
    out.append(j)
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".gif", ".mp4"):
    raise ValueError(f"render path must end in .gif or .mp4, got {path!r}")
  return out


def render_motions(joints: Sequence[np.ndarray], captions: Sequence[str], path: str,
                   fps: int = skeleton.FPS, *, size: float = 3.0, dpi: int = 60) -> str:
  """Writes an animation of the motions side by side and returns the written path.

  Args:
    joints: list of (T_i, 22, 3) joint positions in metres, Y up.
    captions: one title per motion.
    path: output file, .gif (pillow) or .mp4 (ffmpeg; falls back to .gif next to it
      when ffmpeg is missing, and returns that path).
    fps: frames per second of the animation.
    size: inches per panel; dpi: resolution.

  Returns:
    The path of the file written.
  """
  motions = _check(joints, captions, path)
  if path.lower().endswith(".mp4") and shutil.which("ffmpeg") is None:
    path = os.path.splitext(path)[0] + ".gif"
  num_frames = max(len(j) for j in motions)
  fig = plt.figure(figsize=(size * len(motions), size + 0.4), dpi=dpi)
  fig.subplots_adjust(left=0, right=1, bottom=0, top=0.88, wspace=0)
  height = max(2.0, max(float(j[..., 1].max()) for j in motions) + 0.1)
  panels = []
  for k, (j, caption) in enumerate(zip(motions, captions)):
    ax = fig.add_subplot(1, len(motions), k + 1, projection="3d")
    ax.set_box_aspect((1, 1, height / (2 * _HALF_WIDTH)))
    ax.view_init(elev=15, azim=-60)
    ax.set_axis_off()
    ax.set_title("\n".join(textwrap.wrap(caption, 40)[:3]), fontsize=7)
    ax.set_zlim(0, height)   # matplotlib z = our Y (up); matplotlib y = our Z
    grid = [ax.plot([], [], [], color="0.8", lw=0.5)[0] for _ in range(2 * _GRID_LINES)]
    trail = ax.plot([], [], [], color="0.55", lw=0.8)[0]
    bones = [ax.plot([], [], [], color=_CHAIN_COLORS[c], lw=2)[0]
             for c in range(len(skeleton.KINEMATIC_CHAINS))]
    panels.append((ax, j, grid, trail, bones))

  def update(frame: int):
    artists = []
    for ax, j, grid, trail, bones in panels:
      t = min(frame, len(j) - 1)
      pose = j[t]
      # The camera follows the root; the grid stays fixed in the world (0.5 m squares).
      cx, cz = pose[0, 0], pose[0, 2]
      ax.set_xlim(cx - _HALF_WIDTH, cx + _HALF_WIDTH)
      ax.set_ylim(cz - _HALF_WIDTH, cz + _HALF_WIDTH)
      offsets = (np.arange(_GRID_LINES) - _GRID_LINES // 2) * 0.5
      gx, gz = np.floor(cx / 0.5) * 0.5 + offsets, np.floor(cz / 0.5) * 0.5 + offsets
      gx, gz = gx[np.abs(gx - cx) <= _HALF_WIDTH], gz[np.abs(gz - cz) <= _HALF_WIDTH]
      for i, line in enumerate(grid):
        if i < len(gx):
          line.set_data([gx[i]] * 2, [cz - _HALF_WIDTH, cz + _HALF_WIDTH])
        elif _GRID_LINES <= i < _GRID_LINES + len(gz):
          line.set_data([cx - _HALF_WIDTH, cx + _HALF_WIDTH], [gz[i - _GRID_LINES]] * 2)
        else:
          line.set_data([], [])
        line.set_3d_properties(np.zeros(len(line.get_xdata())))
      past = j[max(0, t - 2 * fps):t + 1, 0]
      inside = (np.abs(past[:, 0] - cx) <= _HALF_WIDTH) & (np.abs(past[:, 2] - cz) <= _HALF_WIDTH)
      past = past[inside]
      trail.set_data(past[:, 0], past[:, 2])
      trail.set_3d_properties(np.zeros(len(past)))
      for chain, line in zip(skeleton.KINEMATIC_CHAINS, bones):
        pts = pose[list(chain)]
        line.set_data(pts[:, 0], pts[:, 2])
        line.set_3d_properties(pts[:, 1])
      artists += grid + [trail] + bones
    return artists

  anim = animation.FuncAnimation(fig, update, frames=num_frames, interval=1000 / fps, blit=False)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if path.lower().endswith(".mp4"):
    anim.save(path, writer=animation.FFMpegWriter(fps=fps))
  else:
    anim.save(path, writer=animation.PillowWriter(fps=fps))
  plt.close(fig)
  return path
