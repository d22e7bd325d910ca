"""Stick-figure videos of joint sequences: .mp4 (H.264 through imageio-ffmpeg) or .gif.

Several motions are drawn side by side, each in its own 3-D panel: the caption as the title,
a frame counter, a ground grid that stays fixed in the world while the camera follows the
root, the root's recent ground trajectory, and the feet in contact with the floor marked on
it (green: planted, red: in contact but sliding, i.e. foot skating). Contact uses the rule of
`selfconsume.physics.metrics` (a foot joint within 5 cm of its flat-foot height; sliding
above 0.3 m/s), so the marks show what the `skate` metric counts. Shorter motions hold their
last frame.

Frames are drawn with matplotlib's Agg canvas and streamed to the ffmpeg binary that the
`imageio-ffmpeg` wheel ships (no system ffmpeg needed), or collected into a GIF by Pillow.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from typing import Iterator, Sequence

import imageio_ffmpeg
import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image

from selfconsume.motion import skeleton

_HALF_WIDTH = 1.2   # metres shown either side of the root
_GRID_LINES = 7
_GRID_STEP = 0.5    # metres between grid lines
# Right leg, left leg, spine, right arm, left arm (the order of KINEMATIC_CHAINS).
_CHAIN_COLORS = ("#d62728", "#1f77b4", "#2c2c2c", "#ff7f0e", "#17becf")
_CONTACT_COLOR, _SLIDING_COLOR = "#2ca02c", "#e41a1c"
# The contact rule of selfconsume.physics.metrics.physics_metrics (its defaults).
CONTACT_HEIGHT_M = 0.05
SKATE_SPEED_M_S = 0.3
_FOOT = np.array(skeleton.FOOT_JOINTS)
_REST = skeleton.rest_pose()
_FOOT_REST_HEIGHT = _REST[_FOOT, 1] - _REST[:, 1].min()
FORMATS = (".mp4", ".gif")


def foot_contacts(joints: np.ndarray, fps: float = skeleton.FPS
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Which foot joints touch the floor, and which of those slide, per frame.

  Args:
    joints: (frames, 22, 3) joint positions in metres, Y up, floor at y = 0.
    fps: frame rate.

  Returns:
    (contact, sliding), each (frames, 4) bool over skeleton.FOOT_JOINTS (left ankle, left
    toe, right ankle, right toe). A joint slides when it is in contact on this and the
    previous frame and moved horizontally faster than SKATE_SPEED_M_S in between.
  """
  feet = np.asarray(joints, np.float32)[:, _FOOT]                      # (T, 4, 3)
  contact = (feet[..., 1] - _FOOT_REST_HEIGHT) < CONTACT_HEIGHT_M
  speed = np.zeros(contact.shape, np.float32)
  if len(feet) > 1:
    step = feet[1:] - feet[:-1]
    speed[1:] = np.hypot(step[..., 0], step[..., 2]) * fps
  both = contact.copy()
  both[1:] &= contact[:-1]
  both[0] = False
  return contact, both & (speed > SKATE_SPEED_M_S)


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
  if ext not in FORMATS:
    raise ValueError(f"render path must end in .gif or .mp4, got {path!r}")
  return out


def _even(pixels: float, multiple: int) -> int:
  return max(multiple, int(round(pixels / multiple)) * multiple)


class _Panel:
  """One motion's 3-D axes and the artists updated every frame."""

  def __init__(self, fig: Figure, index: int, count: int, joints: np.ndarray, caption: str,
               height: float, fps: float, fontsize: float):
    self.joints = joints
    self.fps = fps
    self.contact, self.sliding = foot_contacts(joints, fps)
    left = index / count
    ax = fig.add_axes((left, -0.06, 1.0 / count, 0.94), projection="3d")
    ax.set_box_aspect((1, 1, height / (2 * _HALF_WIDTH)), zoom=1.45)
    ax.view_init(elev=15, azim=-60)
    ax.set_axis_off()
    ax.set_zlim(0, height)   # matplotlib z = our Y (up); matplotlib y = our Z
    fig.text(left + 0.5 / count, 0.985, "\n".join(textwrap.wrap(caption, 38)[:2]),
             ha="center", va="top", fontsize=fontsize, wrap=False)
    self.counter = fig.text(left + 0.5 / count, 0.875, "", ha="center", va="bottom",
                            fontsize=0.8 * fontsize, color="0.3", family="monospace")
    self.ax = ax
    self.grid = [ax.plot([], [], [], color="0.8", lw=0.6)[0] for _ in range(2 * _GRID_LINES)]
    self.trail = ax.plot([], [], [], color="0.55", lw=1.0)[0]
    self.bones = [ax.plot([], [], [], color=_CHAIN_COLORS[c], lw=2.5, solid_capstyle="round")[0]
                  for c in range(len(skeleton.KINEMATIC_CHAINS))]
    marker = dict(linestyle="none", marker="o", markersize=0.55 * fontsize, alpha=0.9)
    self.planted = ax.plot([], [], [], color=_CONTACT_COLOR, **marker)[0]
    self.slide = ax.plot([], [], [], color=_SLIDING_COLOR, **marker)[0]

  def update(self, frame: int) -> None:
    j, ax = self.joints, self.ax
    t = min(frame, len(j) - 1)
    pose = j[t]
    # The camera follows the root; the grid stays fixed in the world.
    cx, cz = pose[0, 0], pose[0, 2]
    ax.set_xlim(cx - _HALF_WIDTH, cx + _HALF_WIDTH)
    ax.set_ylim(cz - _HALF_WIDTH, cz + _HALF_WIDTH)
    offsets = (np.arange(_GRID_LINES) - _GRID_LINES // 2) * _GRID_STEP
    gx = np.floor(cx / _GRID_STEP) * _GRID_STEP + offsets
    gz = np.floor(cz / _GRID_STEP) * _GRID_STEP + offsets
    gx, gz = gx[np.abs(gx - cx) <= _HALF_WIDTH], gz[np.abs(gz - cz) <= _HALF_WIDTH]
    for i, line in enumerate(self.grid):
      if i < len(gx):
        line.set_data([gx[i]] * 2, [cz - _HALF_WIDTH, cz + _HALF_WIDTH])
      elif _GRID_LINES <= i < _GRID_LINES + len(gz):
        line.set_data([cx - _HALF_WIDTH, cx + _HALF_WIDTH], [gz[i - _GRID_LINES]] * 2)
      else:
        line.set_data([], [])
      line.set_3d_properties(np.zeros(len(line.get_xdata())))
    past = j[max(0, t - int(2 * self.fps)):t + 1, 0]
    inside = (np.abs(past[:, 0] - cx) <= _HALF_WIDTH) & (np.abs(past[:, 2] - cz) <= _HALF_WIDTH)
    past = past[inside]
    self.trail.set_data(past[:, 0], past[:, 2])
    self.trail.set_3d_properties(np.zeros(len(past)))
    for chain, line in zip(skeleton.KINEMATIC_CHAINS, self.bones):
      pts = pose[list(chain)]
      line.set_data(pts[:, 0], pts[:, 2])
      line.set_3d_properties(pts[:, 1])
    feet = pose[_FOOT]
    for artist, on in ((self.planted, self.contact[t] & ~self.sliding[t]),
                       (self.slide, self.sliding[t])):
      artist.set_data(feet[on, 0], feet[on, 2])
      artist.set_3d_properties(np.zeros(int(on.sum())))
    held = "  (held)" if frame >= len(j) else ""
    self.counter.set_text(f"frame {t + 1:3d}/{len(j)}  {t / self.fps:5.2f} s{held}")


def render_frames(joints: Sequence[np.ndarray], captions: Sequence[str],
                  fps: float = skeleton.FPS, *, size: float = 4.8, dpi: int = 100,
                  multiple: int = 16) -> Iterator[np.ndarray]:
  """Yields the video's frames, (height, width, 3) uint8, one per motion frame.

  Args:
    joints: list of (T_i, 22, 3) joint positions in metres, Y up.
    captions: one title per motion.
    fps: frames per second (the counter shows seconds).
    size: inches per panel (panel width); dpi: pixels per inch.
    multiple: the frame's width and height are rounded to a multiple of this (H.264 with
      yuv420p needs even sizes; 16 avoids ffmpeg's rescaling).
  """
  motions = [np.asarray(j, np.float32) for j in joints]
  num_frames = max(len(j) for j in motions)
  width = _even(size * dpi * len(motions), multiple)
  height = _even(size * dpi * 1.12, multiple)
  fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
  canvas = FigureCanvasAgg(fig)
  top = max(2.0, max(float(j[..., 1].max()) for j in motions) + 0.1)
  fontsize = max(6.0, min(13.0, 2.6 * size * dpi / 100.0))
  panels = [_Panel(fig, k, len(motions), j, c, top, fps, fontsize)
            for k, (j, c) in enumerate(zip(motions, captions))]
  fig.text(0.995, 0.01, "\u25cf contact", color=_CONTACT_COLOR, ha="right", va="bottom",
           fontsize=0.7 * fontsize)
  fig.text(0.995, 0.01 + 0.035, "\u25cf sliding", color=_SLIDING_COLOR, ha="right",
           va="bottom", fontsize=0.7 * fontsize)
  for frame in range(num_frames):
    for panel in panels:
      panel.update(frame)
    canvas.draw()
    yield np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_motions(joints: Sequence[np.ndarray], captions: Sequence[str], path: str,
                   fps: int = skeleton.FPS, *, size: float | None = None, dpi: int = 100
                   ) -> str:
  """Writes a video of the motions side by side and returns the written path.

  Args:
    joints: list of (T_i, 22, 3) joint positions in metres, Y up.
    captions: one title per motion.
    path: output file, .mp4 (H.264 through imageio-ffmpeg's ffmpeg) or .gif (Pillow).
    fps: frames per second of the video.
    size: inches per panel (default 4.8 for .mp4, 3.6 for .gif, whose frames are kept in
      memory); dpi: resolution.

  Returns:
    The path of the file written.
  """
  motions = _check(joints, captions, path)
  mp4 = path.lower().endswith(".mp4")
  size = (4.8 if mp4 else 3.6) if size is None else float(size)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  frames = render_frames(motions, captions, fps, size=size, dpi=dpi)
  tmp = f"{path}.tmp{os.path.splitext(path)[1]}"
  with matplotlib.rc_context({"font.size": 10}):
    if mp4:
      _write_mp4(tmp, frames, fps)
    else:
      _write_gif(tmp, frames, fps)
  os.replace(tmp, path)
  return path


def _write_mp4(path: str, frames: Iterator[np.ndarray], fps: float) -> None:
  first = next(frames)
  writer = imageio_ffmpeg.write_frames(
      path, (first.shape[1], first.shape[0]), fps=fps, codec="libx264", pix_fmt_in="rgb24",
      pix_fmt_out="yuv420p", quality=7, macro_block_size=16, ffmpeg_log_level="error")
  with warnings.catch_warnings():
    # JAX warns on any fork; this one execs ffmpeg at once and runs no Python in the child.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                            category=RuntimeWarning)
    writer.send(None)
  try:
    writer.send(np.ascontiguousarray(first))
    for frame in frames:
      writer.send(np.ascontiguousarray(frame))
  finally:
    writer.close()


def _write_gif(path: str, frames: Iterator[np.ndarray], fps: float) -> None:
  # Quantised one by one so that only palette images stay in memory.
  images = [Image.fromarray(f).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
            for f in frames]
  images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                 duration=int(round(1000 / fps)), loop=0, disposal=1)
