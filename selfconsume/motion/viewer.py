"""An interactive 3-D view of motions in one self-contained HTML file (no network, no libraries).

`write_viewer` writes a page that plays joint sequences as stick figures in 3-D: drag to orbit,
wheel to zoom, a play / pause button (or the space bar), a frame slider, the playback speed,
and a checkbox per motion. Motions of the same `group` share one view (e.g. a sample and its
physics-corrected version, overlaid in two colours); groups sit side by side with one shared
camera and clock. Feet in contact with the floor are marked as in the videos of
`selfconsume.motion.render` (green: planted, red: sliding).

The page draws on a 2-D canvas with its own perspective projection, so it opens offline and
from a file:// URL (brax's HTML viewer loads three.js from a CDN, which machines without
network cannot reach).
"""

from __future__ import annotations

import html
import json
import os
from typing import Sequence

import numpy as np

from selfconsume import outputs
from selfconsume.motion import render
from selfconsume.motion import skeleton

# Colours of the motions of one group, in order (e.g. sampled, corrected).
GROUP_COLORS = ("#d95f02", "#1b6ac9", "#2ca02c", "#7570b3")


def viewer_data(clips: Sequence[np.ndarray], names: Sequence[str],
                groups: Sequence[int] | None = None, *, title: str = "",
                group_titles: Sequence[str] | None = None,
                fps: float = skeleton.FPS) -> dict:
  """The JSON the page plays: joints rounded to millimetres, contacts 0/1/2 per foot joint.

  Args:
    clips: list of (frames, 22, 3) joint positions in metres, Y up.
    names: one label per clip (the checkbox and legend text).
    groups: the view each clip is drawn in (default: one view per clip).
    title: page heading; group_titles: one caption per group (default: the first clip name).
    fps: frame rate.
  """
  if len(clips) == 0 or len(clips) != len(names):
    raise ValueError(f"need one name per clip, got {len(clips)} clips and {len(names)} names")
  groups = list(range(len(clips))) if groups is None else [int(g) for g in groups]
  if len(groups) != len(clips):
    raise ValueError(f"need one group per clip, got {len(groups)} for {len(clips)} clips")
  order = sorted(set(groups))
  entries = []
  rank: dict[int, int] = {}
  for clip, name, group in zip(clips, names, groups):
    joints = np.asarray(clip, np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (skeleton.NUM_JOINTS, 3) or not len(joints):
      raise ValueError(f"clip {name!r}: expected joints (frames, 22, 3), got {joints.shape}")
    contact, sliding = render.foot_contacts(joints, fps)
    k = rank.get(group, 0)
    rank[group] = k + 1
    entries.append({
        "name": str(name), "group": order.index(group), "slot": k,
        "color": GROUP_COLORS[k % len(GROUP_COLORS)], "frames": int(len(joints)),
        "joints": np.round(joints.reshape(-1), 3).tolist(),
        "contact": (contact.astype(np.int8) + sliding.astype(np.int8)).reshape(-1).tolist()})
  if group_titles is None:
    group_titles = [next(e["name"] for e in entries if e["group"] == g)
                    for g in range(len(order))]
  return {"title": title, "fps": float(fps), "chains": [list(c) for c in skeleton.KINEMATIC_CHAINS],
          "left": [1, 4], "foot": list(skeleton.FOOT_JOINTS), "groups": list(group_titles),
          "clips": entries}


def write_viewer(path: str, clips: Sequence[np.ndarray], names: Sequence[str],
                 groups: Sequence[int] | None = None, *, title: str = "",
                 group_titles: Sequence[str] | None = None,
                 fps: float = skeleton.FPS) -> str:
  """Writes the interactive page (see the module docstring) to `path`; returns `path`."""
  data = viewer_data(clips, names, groups, title=title, group_titles=group_titles, fps=fps)
  page = (_PAGE.replace("__TITLE__", html.escape(title or "motion viewer"))
          .replace("__DATA__", json.dumps(data, separators=(",", ":"))))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  outputs.write_text_atomic(path, page)
  return path


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 12px; color: #222; }
#views { display: flex; flex-wrap: wrap; gap: 8px; }
.view { border: 1px solid #ccc; border-radius: 4px; }
.view h3 { font-size: 14px; margin: 4px 8px; font-weight: 500; }
canvas { display: block; cursor: grab; }
#bar { display: flex; align-items: center; gap: 10px; margin: 8px 0; flex-wrap: wrap; }
#slider { width: 320px; }
#counter { font-family: monospace; }
.key { display: inline-block; width: 10px; height: 10px; border-radius: 5px; }
</style></head>
<body>
<h2 id="title" style="font-size:17px;margin:4px 0"></h2>
<div id="bar">
  <button id="play">pause</button>
  <input id="slider" type="range" min="0" value="0">
  <span id="counter"></span>
  <label>speed <select id="speed"><option>0.25</option><option>0.5</option>
    <option selected>1</option><option>2</option></select></label>
  <label><input id="follow" type="checkbox" checked> follow</label>
  <button id="reset">reset view</button>
  <span id="toggles"></span>
</div>
<div id="views"></div>
<p style="font-size:12px;color:#555">Drag to orbit, wheel to zoom, space to play / pause.
Feet on the floor: <span class="key" style="background:#2ca02c"></span> contact,
<span class="key" style="background:#e41a1c"></span> sliding (foot skating). Grid: 0.5 m.</p>
<script id="motion-data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("motion-data").textContent);
document.getElementById("title").textContent = D.title;
const N = Math.max(...D.clips.map(c => c.frames));
const cam = {yaw: 0.6, pitch: 0.3, dist: 4.2};
const shown = {};
let frame = 0, playing = true, last = null, acc = 0;
const slider = document.getElementById("slider");
slider.max = N - 1;
const views = D.groups.map((caption, g) => {
  const box = document.createElement("div");
  box.className = "view";
  const h = document.createElement("h3");
  h.textContent = caption;
  const canvas = document.createElement("canvas");
  const w = D.groups.length > 2 ? 360 : 460;
  canvas.width = w; canvas.height = Math.round(w * 1.05);
  box.appendChild(h); box.appendChild(canvas);
  document.getElementById("views").appendChild(box);
  return {canvas, ctx: canvas.getContext("2d"), clips: D.clips.filter(c => c.group === g)};
});
const names = [...new Set(D.clips.map(c => c.slot))].map(
    s => D.clips.find(c => c.slot === s));
for (const c of names) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox"; box.checked = true; shown[c.slot] = true;
  box.onchange = () => { shown[c.slot] = box.checked; draw(); };
  label.appendChild(box);
  const key = document.createElement("span");
  key.className = "key"; key.style.background = c.color;
  label.appendChild(key);
  const word = c.name.includes(":") ? c.name.split(":")[0] : c.name;
  label.appendChild(document.createTextNode(" " + word + " "));
  document.getElementById("toggles").appendChild(label);
}
function joint(c, t, j) {
  const f = Math.min(t, c.frames - 1), o = (f * 22 + j) * 3;
  return [c.joints[o], c.joints[o + 1], c.joints[o + 2]];
}
function target(v, t) {
  if (!document.getElementById("follow").checked) return [0, 0.9, 0];
  let x = 0, z = 0, n = 0;
  for (const c of v.clips) { const p = joint(c, t, 0); x += p[0]; z += p[2]; n++; }
  return [x / n, 0.9, z / n];
}
function projector(v, t) {
  const tg = target(v, t), cy = Math.cos(cam.yaw), sy = Math.sin(cam.yaw);
  const cp = Math.cos(cam.pitch), sp = Math.sin(cam.pitch);
  const eye = [tg[0] + cam.dist * cp * sy, tg[1] + cam.dist * sp, tg[2] + cam.dist * cp * cy];
  const f = [tg[0] - eye[0], tg[1] - eye[1], tg[2] - eye[2]];
  const fl = Math.hypot(...f); f[0] /= fl; f[1] /= fl; f[2] /= fl;
  let r = [-f[2], 0, f[0]]; const rl = Math.hypot(...r); r = r.map(a => a / rl);
  const u = [r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0]];
  const W = v.canvas.width, H = v.canvas.height, focal = 1.4 * W;
  return p => {
    const d = [p[0] - eye[0], p[1] - eye[1], p[2] - eye[2]];
    const z = d[0] * f[0] + d[1] * f[1] + d[2] * f[2];
    if (z < 0.05) return null;
    return [W / 2 + focal * (d[0] * r[0] + d[1] * r[1] + d[2] * r[2]) / z,
            H * 0.55 - focal * (d[0] * u[0] + d[1] * u[1] + d[2] * u[2]) / z, z];
  };
}
function line(ctx, a, b) {
  if (!a || !b) return;
  ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
}
function drawView(v) {
  const ctx = v.ctx, P = projector(v, frame), tg = target(v, frame);
  ctx.clearRect(0, 0, v.canvas.width, v.canvas.height);
  ctx.strokeStyle = "#d0d0d0"; ctx.lineWidth = 1;
  const gx = Math.round(tg[0] / 0.5) * 0.5, gz = Math.round(tg[2] / 0.5) * 0.5;
  for (let k = -6; k <= 6; k++) {
    line(ctx, P([gx + k * 0.5, 0, gz - 3]), P([gx + k * 0.5, 0, gz + 3]));
    line(ctx, P([gx - 3, 0, gz + k * 0.5]), P([gx + 3, 0, gz + k * 0.5]));
  }
  for (const c of v.clips) {
    if (!shown[c.slot]) continue;
    ctx.strokeStyle = c.color; ctx.globalAlpha = 0.35; ctx.lineWidth = 1.5;
    for (let t = Math.max(1, frame - 2 * D.fps); t <= Math.min(frame, c.frames - 1); t++) {
      const a = joint(c, t - 1, 0), b = joint(c, t, 0);
      line(ctx, P([a[0], 0, a[2]]), P([b[0], 0, b[2]]));
    }
    ctx.globalAlpha = 1;
    const t = Math.min(frame, c.frames - 1);
    for (const chain of D.chains) {
      const left = D.left.includes(chain[1]) || chain[1] === 13;
      ctx.strokeStyle = c.color; ctx.globalAlpha = left ? 0.55 : 1.0;
      ctx.lineWidth = 3.5; ctx.lineCap = "round";
      for (let i = 1; i < chain.length; i++)
        line(ctx, P(joint(c, t, chain[i - 1])), P(joint(c, t, chain[i])));
    }
    ctx.globalAlpha = 1;
    const head = P(joint(c, t, 15));
    if (head) { ctx.fillStyle = c.color; ctx.beginPath();
      ctx.arc(head[0], head[1], Math.max(3, 0.075 * 1.4 * v.canvas.width / head[2]), 0, 7);
      ctx.fill(); }
    D.foot.forEach((j, k) => {
      const s = c.contact[t * 4 + k];
      if (!s) return;
      const p = joint(c, t, j), q = P([p[0], 0, p[2]]);
      if (!q) return;
      ctx.fillStyle = s === 2 ? "#e41a1c" : "#2ca02c";
      ctx.strokeStyle = c.color; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(q[0], q[1], 5, 0, 7); ctx.fill(); ctx.stroke();
    });
  }
}
function draw() {
  views.forEach(drawView);
  slider.value = frame;
  document.getElementById("counter").textContent =
      `frame ${String(frame + 1).padStart(3)}/${N}  ${(frame / D.fps).toFixed(2)} s`;
}
function tick(now) {
  if (last !== null && playing) {
    acc += (now - last) / 1000 * D.fps * parseFloat(document.getElementById("speed").value);
    while (acc >= 1) { frame = (frame + 1) % N; acc -= 1; }
    draw();
  }
  last = now;
  requestAnimationFrame(tick);
}
function setPlaying(p) { playing = p; document.getElementById("play").textContent = p ? "pause" : "play"; }
document.getElementById("play").onclick = () => setPlaying(!playing);
document.addEventListener("keydown", e => { if (e.code === "Space") { e.preventDefault(); setPlaying(!playing); } });
slider.oninput = () => { frame = parseInt(slider.value); setPlaying(false); draw(); };
document.getElementById("reset").onclick = () => { cam.yaw = 0.6; cam.pitch = 0.3; cam.dist = 4.2; draw(); };
document.getElementById("follow").onchange = draw;
for (const v of views) {
  let drag = null;
  v.canvas.onmousedown = e => { drag = [e.clientX, e.clientY]; v.canvas.style.cursor = "grabbing"; };
  window.addEventListener("mouseup", () => { drag = null; v.canvas.style.cursor = "grab"; });
  window.addEventListener("mousemove", e => {
    if (!drag) return;
    cam.yaw -= (e.clientX - drag[0]) * 0.01;
    cam.pitch = Math.max(-0.2, Math.min(1.5, cam.pitch + (e.clientY - drag[1]) * 0.01));
    drag = [e.clientX, e.clientY]; draw();
  });
  v.canvas.addEventListener("wheel", e => {
    e.preventDefault(); cam.dist = Math.max(1.5, Math.min(12, cam.dist * Math.exp(e.deltaY * 0.001))); draw();
  }, {passive: false});
}
const params = new URLSearchParams(location.search);
if (params.has("frame")) { frame = Math.min(N - 1, parseInt(params.get("frame"))); setPlaying(false); }
draw();
requestAnimationFrame(tick);
</script>
</body></html>
"""
