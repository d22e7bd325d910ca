"""Stick-figure rendering: a gif of four motions side by side whose frames change."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from selfconsume.data import procedural
from selfconsume.motion import render
from selfconsume.motion import skeleton


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


def _walk(frames=12):
  rng = np.random.default_rng(1)
  joints, captions, _ = procedural.sample_motion(rng)
  return joints[:frames], captions[0]


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # read_frames starts ffmpeg
def test_render_mp4_through_imageio_ffmpeg(tmp_path):
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  joints, caption = _walk()
  path = render.render_motions([joints, joints[:6]], [caption, "shorter"],
                               str(tmp_path / "two.mp4"), fps=10, size=2.0, dpi=60)
  frames = imageio_ffmpeg.read_frames(path)
  meta = next(frames)
  images = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3)
            for f in frames]
  assert len(images) == len(joints)
  assert meta["size"][0] % 16 == 0 and meta["size"][1] % 16 == 0
  # The frame counter (and the motion) change from frame to frame.
  assert np.abs(images[0].astype(float) - images[-1].astype(float)).mean() > 0.1


def test_foot_contacts_mark_planted_and_sliding_feet():
  rest = skeleton.rest_pose() - [0.0, skeleton.rest_pose()[:, 1].min(), 0.0]
  still = np.repeat(rest[None], 5, axis=0)
  contact, sliding = render.foot_contacts(still, fps=20)
  assert contact.all() and not sliding.any()
  slide = still.copy()
  slide[:, :, 0] += np.arange(5)[:, None] * 0.05    # 1 m/s along x, feet on the floor
  contact, sliding = render.foot_contacts(slide, fps=20)
  assert contact.all() and sliding[1:].all() and not sliding[0].any()
  lifted = still + [0.0, 0.3, 0.0]
  assert not render.foot_contacts(lifted)[0].any()


def test_viewer_page_holds_the_motions(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  from selfconsume.motion import viewer  # pylint: disable=g-import-not-at-top
  joints, caption = _walk()
  path = viewer.write_viewer(str(tmp_path / "view.html"), [joints, joints + 0.01],
                             ["sampled", "corrected"], groups=[0, 0], title=caption)
  text = open(path).read()
  assert "<script src" not in text and "http" not in text.split("<script id")[1]  # offline
  data = json.loads(re.search(r'type="application/json">(.*?)</script>', text, re.S).group(1))
  assert [c["name"] for c in data["clips"]] == ["sampled", "corrected"]
  assert {c["group"] for c in data["clips"]} == {0}
  first = np.asarray(data["clips"][0]["joints"]).reshape(-1, 22, 3)
  np.testing.assert_allclose(first, joints, atol=6e-4)
  assert len(data["clips"][0]["contact"]) == 4 * len(joints)
