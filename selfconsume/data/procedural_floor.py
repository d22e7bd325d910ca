"""Floor actions of the procedural corpus: kneeling, sitting back on the heels, crawling on
hands and knees, lying down on the stomach, and getting back up.

Every pose of these actions rests on joints the physics humanoid can stand on (its contact
spheres: toes, ankles, knees, wrists, pelvis, head), never on the hips, spine or elbows, and
each resting joint stays where it was put down:

  stand -> deep squat on the tucked toes (heels rise, toes stay, the weight over them)
        -> drop onto both knees, sitting back towards the heels
        -> kneel upright | sit on the heels
        -> lean forward, hips back, until the hands are down -> hips over the knees (all
           fours) -> crawl | lower hips and chest to the floor (lying on the stomach: the
           pelvis on the floor, the chest propped on the hands)

and back up the same way. Each step moves rest-to-rest between key poses in which the resting
joints agree, so positions and velocities are continuous. The body's centre of mass stays
over its support except in the half-second drop onto the knees (and the push back up from
them), as when people go down on both knees at once: the corrector's bounded root force
covers that.

The actions are planned in the *start frame* of the motion (root XZ of frame 0 at the
origin, facing +Z, left = +X, floor y = 0) with the geometry helpers of
procedural_kinematics and hand their limbs to controls_to_joints as pinned start-frame
targets, so they must be the first action of a motion (procedural.sample_motion sees to it).
With the knees down the pelvis is placed where the thighs reach the knees exactly: with the
knees side by side that is one thigh angle, while crawling a height and a pelvis roll solved
per frame. An action that starts on the floor (crawling from all fours, getting up) is the
second half of a plan that starts standing, cut at a key pose.

All random choices are drawn in `sample_params`; `build` is deterministic in them.
"""

from __future__ import annotations

import numpy as np

from selfconsume.data import procedural_kinematics as kin
from selfconsume.motion import skeleton

_FPS = float(skeleton.FPS)
_OFFSETS = skeleton.REST_OFFSETS.astype(np.float64)
_HIP_X = float(_OFFSETS[1, 0])
_HIP_DROP = -float(_OFFSETS[1, 1])          # pelvis -> hip, along the pelvis's up axis
_TOE_TUCK = float(np.deg2rad(60.0))         # heel raise when kneeling on tucked toes
_HAND_LIFT = 0.06                           # m, crawling hands
_KNEE_LIFT = 0.025                          # m, crawling knees
FAMILIES = ("kneel", "crawl", "lie_down")


def _ramp01(num: int) -> np.ndarray:
  """num values rising rest-to-rest from 0 (exclusive) to 1 (inclusive)."""
  u = np.arange(1, num + 1, dtype=np.float64) / num
  return 0.5 - 0.5 * np.cos(np.pi * u)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class _Legs:
  """Foot and knee geometry of a kneel (start frame, before any crawling)."""

  def __init__(self, stance: float):
    self.flat_ankle = np.array([[stance, kin.ANKLE_HEIGHT, 0.0],
                                [-stance, kin.ANKLE_HEIGHT, 0.0]])
    self.foot = _OFFSETS[[10, 11]]                              # ankle -> toe, flat foot
    self.toe = self.flat_ankle + self.foot                      # the planted toes
    self.tucked_ankle = self.ankle(_TOE_TUCK)
    reach = np.sqrt(kin.SHIN ** 2 - self.tucked_ankle[:, 1] ** 2)
    # Knees on the floor straight ahead of the raised ankles.
    self.knee = np.stack([self.tucked_ankle[:, 0], np.zeros(2),
                          self.tucked_ankle[:, 2] + reach], -1)
    self.radius = np.sqrt(kin.THIGH ** 2 - (np.abs(self.knee[:, 0]) - _HIP_X) ** 2)

  def ankle(self, theta) -> np.ndarray:
    """Ankles (2, 3) with the heels raised by theta about the planted toes."""
    return self.toe - kin.apply(kin.rot_x(np.float64(theta)), self.foot)

  def hips(self, alpha) -> np.ndarray:
    """Hips (2, 3) on their thigh spheres around the kneeling knees; alpha = thigh angle
    from vertical (positive: hips ahead of the knees)."""
    return np.stack([np.array([_HIP_X, -_HIP_X]),
                     self.knee[:, 1] + self.radius * np.cos(alpha),
                     self.knee[:, 2] + self.radius * np.sin(alpha)], -1)


def _root_from_hips(hips: np.ndarray, pitch: float) -> np.ndarray:
  """Pelvis (3,) whose hips (unrolled pelvis tilted forward by pitch) are at hips (2, 3)."""
  return hips.mean(0) + np.array([0.0, _HIP_DROP * np.cos(pitch), _HIP_DROP * np.sin(pitch)])


def _upper_body(pose: dict) -> dict[int, np.ndarray]:
  """Spine, neck, head, collar and shoulder joints {joint: (3,)} of a pose (no roll/twist)."""
  root = np.asarray(pose["root"], np.float64)[None]
  rot = kin.pelvis_rotation(np.zeros(1), np.array([pose["pelvis_pitch"]]), np.zeros(1))
  body, _ = kin.upper_body(root, rot, np.array([pose["pitch"]]), np.zeros(1), np.zeros(1),
                           np.array([pose["head_pitch"]]))
  return {j: p[0] for j, p in body.items()}


class _Plan:
  """Per-frame start-frame geometry of a floor action, built step by step.

  A pose is a dict of channel values. In 'toe' mode the toes are planted, the heels raised
  by theta and the root is given; in 'knee' mode the knees are down and the root follows
  from the thigh angle alpha and the pelvis pitch.
  """

  def __init__(self, performer: dict):
    self.legs = _Legs(performer["stance"])
    self.frames: list[dict] = []
    self.shift = 0.0           # distance crawled so far (everything after moves with it)
    self.hands = np.zeros((2, 3))
    self.stand = {"theta": 0.0, "alpha": 0.0, "root": np.array([0.0, kin.STAND_HEIGHT, 0.0]),
                  "pelvis_pitch": 0.0, "pitch": performer["lean"],
                  "head_pitch": performer["head"],
                  "pole_w": 0.0, "flex": np.zeros(2), "abduct": np.full(2, performer["abduct"]),
                  "elbow": np.full(2, performer["elbow"]), "hand_w": np.zeros(2),
                  "elbow_pole": np.array([[0.3, 0.0, -1.0], [-0.3, 0.0, -1.0]])}
    self.pose, self.mode = dict(self.stand), "toe"

  def _offset(self) -> np.ndarray:
    return np.array([0.0, 0.0, self.shift])

  def resolve(self, mode: str, **values) -> dict:
    """The current pose with `values` changed (root relative to the crawled distance)."""
    pose = dict(self.pose)
    pose.update({k: np.asarray(v, np.float64) for k, v in values.items()})
    if "root" in values:
      pose["root"] = pose["root"] + self._offset()
    if mode == "knee":
      pose["root"] = _root_from_hips(self.legs.hips(float(pose["alpha"])) + self._offset(),
                                     float(pose["pelvis_pitch"]))
    return pose

  def key(self, frames: int, mode: str, **values) -> None:
    """Moves rest-to-rest over `frames` frames to a new key pose of `mode`. In between, the
    knees stay down only if both key poses kneel; otherwise the toes stay planted and the
    root moves (the knees go down or come up)."""
    target = self.resolve(mode, **values)
    start = self.pose
    between = "knee" if (self.mode == "knee" and mode == "knee") else "toe"
    for u in _ramp01(frames):
      self.frames.append(self._geometry({k: start[k] + u * (target[k] - start[k])
                                         for k in start}, between))
    self.pose, self.mode = target, mode

  def hold(self, frames: int) -> None:
    self.frames.extend(self._geometry(self.pose, self.mode) for _ in range(frames))

  def plant_hands(self, pose: dict, ahead: float, spread: float) -> None:
    """Puts the hand plants under the shoulders of `pose`, `ahead` m further forward."""
    body = _upper_body(pose)
    shoulders = np.stack([body[16], body[17]])
    self.hands = np.stack([shoulders[:, 0] * spread, np.zeros(2), shoulders[:, 2] + ahead], -1)

  def _geometry(self, pose: dict, mode: str) -> dict:
    legs, offset = self.legs, self._offset()
    knee = legs.knee + offset
    if mode == "knee":
      ankle = legs.tucked_ankle + offset
      hips = legs.hips(float(pose["alpha"])) + offset
      pose = dict(pose, root=_root_from_hips(hips, float(pose["pelvis_pitch"])))
      pole_w = np.ones(2)
    else:
      ankle = legs.ankle(float(pose["theta"])) + offset
      rot = kin.pelvis_rotation(np.zeros(1), np.array([pose["pelvis_pitch"]]), np.zeros(1))
      hips = kin.hip_positions(np.asarray(pose["root"], np.float64)[None], rot)[0]
      pole_w = np.full(2, float(pose["pole_w"]))
    return {"root": np.asarray(pose["root"], np.float64), "pelvis_pitch": pose["pelvis_pitch"],
            "pelvis_roll": 0.0, "pitch": pose["pitch"], "head_pitch": pose["head_pitch"],
            "flex": pose["flex"], "abduct": pose["abduct"], "elbow": pose["elbow"],
            "ankle": ankle, "toe": legs.toe + offset, "knee_pole": knee - hips,
            "pole_w": pole_w, "wrist": self.hands + offset, "wrist_w": pose["hand_w"],
            "elbow_pole": pose["elbow_pole"],
            "flat": np.full(2, mode == "toe" and float(pose["theta"]) <= 1e-9)}

  def crawl(self, cycles: int, step: float, cycle_frames: int, lead: int) -> None:
    """Crawls from all fours (the current key pose) `cycles` gait cycles forward and stops
    on all fours `cycles * step` m further. Diagonal pairs (one knee and the other hand)
    swing in turn, `lead` (0 = left knee) first; the pelvis moves on meanwhile, its height
    and roll putting each hip at thigh length from its planted knee."""
    legs, pose = self.legs, self.pose
    swing = int(round(0.4 * cycle_frames))
    total = cycles * cycle_frames
    t = np.arange(1, total + 1, dtype=np.float64)
    env = np.clip(np.minimum(t, total - t) / (0.5 * cycle_frames), 0.0, 1.0)
    progress = np.cumsum(0.5 - 0.5 * np.cos(np.pi * env))
    progress *= cycles * step / progress[-1]
    root = np.repeat(np.asarray(pose["root"], np.float64)[None], total, 0)
    root[:, 2] += progress
    knees = np.repeat((legs.knee + self._offset())[None], total, 0)
    hands = np.repeat((self.hands + self._offset())[None], total, 0)
    knee_swing = np.zeros((total, 2), bool)
    s = np.arange(1, swing + 1) / (swing + 1)
    # Lift first, then move: the limb leaves and meets the floor vertically.
    u = np.clip((s - 0.2) / 0.6, 0.0, 1.0)
    smooth = u * u * (3 - 2 * u)
    for c in range(cycles):
      for pair in range(2):
        begin = c * cycle_frames + pair * (cycle_frames // 2)
        knee_side = (lead + pair) % 2
        for limbs, side, lift in ((knees, knee_side, _KNEE_LIFT),
                                  (hands, 1 - knee_side, _HAND_LIFT)):
          frames = np.arange(begin, begin + swing)
          p0 = limbs[begin, side].copy()
          p1 = p0 + np.array([0.0, 0.0, step])
          limbs[frames, side] = p0 + smooth[:, None] * (p1 - p0)
          limbs[frames, side, 1] = p0[1] + lift * np.sin(np.pi * s)
          limbs[begin + swing:, side] = p1
        knee_swing[begin:begin + swing, knee_side] = True
    # Hip heights: at thigh length from each planted knee; while a knee swings, its hip
    # height is interpolated between its plants, and raised where the knee could not
    # otherwise clear its arc (the hip hikes). The pelvis height and roll realise both hip
    # heights (fixed-point passes: the roll moves the hips sideways a little, which changes
    # their distance to the knees).
    pitch = np.full(total, float(pose["pelvis_pitch"]))
    roll = np.zeros(total)
    idx = np.arange(total)
    for _ in range(6):
      rot = kin.rot_z(roll) @ kin.rot_x(pitch)
      rel = kin.apply(rot[:, None], _OFFSETS[[1, 2]])                       # (T, 2, 3)
      hip_xz = root[:, None, [0, 2]] + rel[..., [0, 2]]
      dist2 = np.sum((hip_xz - knees[..., [0, 2]]) ** 2, -1)
      exact = knees[..., 1] + np.sqrt(np.maximum(kin.THIGH ** 2 - dist2, 0.0))
      need = exact.copy()
      for side in range(2):
        planted = ~knee_swing[:, side]
        need[:, side] = np.maximum(np.interp(idx, idx[planted], exact[planted, side]),
                                   exact[:, side])
      roll = np.arcsin(np.clip((need[:, 0] - need[:, 1]) / (2 * _HIP_X), -0.5, 0.5))
      root[:, 1] = need[:, 0] - (_HIP_X * np.sin(roll) - _HIP_DROP * np.cos(pitch) * np.cos(roll))
    rot = kin.rot_z(roll) @ kin.rot_x(pitch)
    hips = root[:, None] + kin.apply(rot[:, None], _OFFSETS[[1, 2]])
    # Planted knees are at thigh length already; swinging ones are on their arc or, where
    # the hip is higher than needed, at thigh length from it towards the arc (above it).
    knee_pos = np.where(knee_swing[..., None], hips + kin.THIGH * _unit(knees - hips), knees)
    shin = legs.tucked_ankle - legs.knee
    foot = legs.toe - legs.tucked_ankle
    for k in range(total):
      self.frames.append({
          "root": root[k], "pelvis_pitch": pitch[k], "pelvis_roll": roll[k],
          "pitch": pose["pitch"], "head_pitch": pose["head_pitch"], "flex": pose["flex"],
          "abduct": pose["abduct"], "elbow": pose["elbow"], "ankle": knee_pos[k] + shin,
          "toe": knee_pos[k] + shin + foot, "knee_pole": knee_pos[k] - hips[k],
          "pole_w": np.ones(2), "wrist": hands[k], "wrist_w": pose["hand_w"],
          "elbow_pole": pose["elbow_pole"], "flat": np.zeros(2, bool)})
    self.shift += cycles * step
    self.pose = self.resolve("knee")

  def controls(self, c: dict, first: int) -> dict:
    """Frames `first`.. of the plan as controls (start-frame pins; `exact`: not smoothed when
    merged), moved so that the root of the first of them is at the start-frame origin."""
    frames = self.frames[first:]
    n = len(frames)
    stack = lambda k: np.stack([np.asarray(f[k], np.float64) for f in frames])
    origin = stack("root")[0] * np.array([1.0, 0.0, 1.0])
    root = stack("root") - origin
    c["vel"][:-1, 0] = np.diff(root[:, 0])
    c["vel"][:-1, 1] = np.diff(root[:, 2])
    c["vel"][-1] = 0.0
    c["height"] = (root[:, 1] - kin.STAND_HEIGHT).astype(np.float32)
    for k in ("pelvis_pitch", "pelvis_roll", "pitch", "head_pitch", "flex", "abduct", "elbow",
              "wrist_w", "elbow_pole"):
      c[k] = stack(k).astype(np.float32)
    c["ankle_w"] = np.ones((n, 2), np.float32)
    c["ankle_at"] = (stack("ankle") - origin).astype(np.float32)
    c["toe_w"] = np.ones((n, 2), np.float32)
    c["toe_at"] = (stack("toe") - origin).astype(np.float32)
    c["knee_pole_w"] = stack("pole_w").astype(np.float32)
    c["knee_pole"] = stack("knee_pole").astype(np.float32)
    c["wrist_at"] = (stack("wrist") - origin).astype(np.float32)
    c["contact"] = stack("flat") > 0.5
    c["exact"] = np.ones(n, bool)
    return c


# ----------------------------------------------------------------------------- scripts
# A script is a list of steps (name, frames, values) drawn by sample_params and replayed by
# build; 'mark' records where an action that starts on the floor begins.
def _seconds(rng, low: float, high: float, tempo: float) -> int:
  return max(3, int(round(rng.uniform(low, high) * tempo * _FPS)))


def _squat_root(legs: _Legs, back: float, height: float, pitch: float) -> list:
  """Root of the deep squat on the tucked toes: the hips `back` m behind the toes and
  `height` m above the floor (the body's weight over the toes), the pelvis tilted by pitch."""
  hips = np.stack([np.array([_HIP_X, -_HIP_X]), np.full(2, height),
                   legs.toe[:, 2] - back], -1)
  return list(_root_from_hips(hips, pitch))


def _toe_squat(rng, legs: _Legs, pitch: float) -> dict:
  """The deep squat on the tucked toes, the pose between kneeling and standing (both ways)."""
  return dict(theta=_TOE_TUCK, root=_squat_root(legs, rng.uniform(0.12, 0.16),
                                                rng.uniform(0.26, 0.30), pitch),
              pelvis_pitch=pitch, pitch=rng.uniform(0.15, 0.3), pole_w=1.0,
              flex=np.full(2, rng.uniform(0.9, 1.3)), elbow=np.full(2, 0.3))


def _get_down(rng, tempo: float, legs: _Legs, upright: bool) -> list:
  """Standing -> deep squat on the tucked toes (the weight over them) -> knees down onto the
  floor in front, sitting back towards the heels [-> kneeling upright]. The drop onto the
  knees (about half a second) is the one step where the weight is ahead of the toes before
  the knees take it, as when people go down on both knees at once."""
  sit = np.deg2rad(rng.uniform(-58, -52))
  pitch = rng.uniform(0.05, 0.15)
  steps = [
      ("toe", _seconds(rng, 0.8, 1.1, tempo), _toe_squat(rng, legs, pitch)),
      ("knee", _seconds(rng, 0.4, 0.6, tempo), dict(
          alpha=sit, pelvis_pitch=0.1, pitch=rng.uniform(0.35, 0.5), flex=np.full(2, 0.5))),
  ]
  if upright:
    steps.append(("knee", _seconds(rng, 0.6, 0.9, tempo), dict(
        alpha=np.deg2rad(rng.uniform(-12, -4)), pelvis_pitch=0.0, pitch=rng.uniform(0.0, 0.1),
        flex=np.zeros(2), elbow=np.full(2, 0.3))))
  return steps


def _get_up(rng, tempo: float, legs: _Legs, stand: dict, from_fours: bool) -> list:
  """Kneeling (upright, sitting or on all fours) -> sitting on the heels, leaning forward
  (from all fours: hips back first, hands still down) -> knees up into the squat on the
  toes -> standing."""
  sit = np.deg2rad(rng.uniform(-58, -52))
  pitch = rng.uniform(0.05, 0.15)
  steps = []
  if from_fours:
    steps.append(("knee", _seconds(rng, 0.6, 0.8, tempo), dict(
        alpha=np.deg2rad(rng.uniform(-38, -32)), pelvis_pitch=1.0, pitch=0.4,
        head_pitch=-0.3)))
  steps += [
      ("knee", _seconds(rng, 0.6, 0.9, tempo), dict(
          alpha=sit, pelvis_pitch=0.1, pitch=rng.uniform(0.35, 0.5), head_pitch=0.0,
          flex=np.full(2, 0.5), elbow=np.full(2, 0.5), hand_w=np.zeros(2),
          elbow_pole=stand["elbow_pole"])),
      ("toe", _seconds(rng, 0.4, 0.6, tempo), _toe_squat(rng, legs, pitch)),
      ("toe", _seconds(rng, 0.8, 1.1, tempo), dict(
          theta=0.0, root=stand["root"], pelvis_pitch=0.0, pitch=stand["pitch"], pole_w=0.0,
          head_pitch=stand["head_pitch"], flex=stand["flex"], abduct=stand["abduct"],
          elbow=stand["elbow"])),
  ]
  return steps


def _to_fours(rng, tempo: float) -> list:
  """From sitting on the heels: lean forward with the hips back until the hands are down,
  then bring the hips over the knees (all fours)."""
  return [
      ("fours", _seconds(rng, 0.7, 1.0, tempo), dict(
          alpha=np.deg2rad(rng.uniform(-38, -32)), pelvis_pitch=1.0, pitch=0.4,
          head_pitch=-0.4, hand_w=np.ones(2), flex=np.full(2, 1.2), elbow=np.full(2, 0.3),
          elbow_pole=np.array([[0.4, 0.0, -1.0], [-0.4, 0.0, -1.0]]),
          ahead=rng.uniform(0.15, 0.22), spread=rng.uniform(0.8, 1.0))),
      ("knee", _seconds(rng, 0.6, 0.8, tempo), dict(
          alpha=np.deg2rad(rng.uniform(-3, 5)), pelvis_pitch=rng.uniform(1.15, 1.3),
          pitch=rng.uniform(0.3, 0.4), head_pitch=-0.5)),
  ]


def _prone(rng, legs: _Legs) -> dict:
  """Lying on the stomach: hips a little above the floor, the pelvis tilted past level so
  its joint rests on the floor, the back arched and the chest propped on the hands."""
  alpha = np.deg2rad(rng.uniform(86.0, 87.5))
  hip_y = float(legs.radius.mean() * np.cos(alpha))
  root_y = rng.uniform(0.0, 0.006)
  pelvis_pitch = float(np.arccos((root_y - hip_y) / _HIP_DROP))
  # The least arch (from a random start) that keeps the lower spine 1.5 cm off the floor.
  for pitch in np.arange(rng.uniform(-0.6, -0.5), -1.2, -0.02):
    pose = {"root": [0.0, root_y, 0.0], "pelvis_pitch": pelvis_pitch, "pitch": pitch,
            "head_pitch": 0.0}
    body = _upper_body(pose)
    if min(body[j][1] for j in (3, 6, 9, 16, 17)) >= 0.015:
      break
  return dict(alpha=alpha, pelvis_pitch=pelvis_pitch, pitch=float(pitch),
              head_pitch=rng.uniform(-0.7, -0.4),
              elbow_pole=np.array([[0.6, 1.0, -0.4], [-0.6, 1.0, -0.4]]))


def sample_params(rng: np.random.Generator, family: str, performer: dict) -> dict:
  """Random parameters of a floor action; `frames` is its duration."""
  tempo = rng.uniform(0.8, 1.1)
  plan = _Plan(performer)
  p = dict(performer=performer, start_on_floor=False, end_on_floor=False)
  legs = plan.legs
  if family == "kneel":
    steps = _get_down(rng, tempo, legs, upright=True)
    kneel = steps[-1][2]
    p["variant"] = "sit" if rng.uniform() < 0.5 else "kneel"
    if p["variant"] == "sit":
      steps.append(("knee", _seconds(rng, 0.7, 1.0, tempo), dict(
          alpha=np.deg2rad(rng.uniform(-62, -54)), pelvis_pitch=rng.uniform(-0.1, 0.05),
          pitch=rng.uniform(0.1, 0.25), flex=np.full(2, 0.6), elbow=np.full(2, 0.9))))
      steps.append(("hold", _seconds(rng, 0.3, 1.2, 1.0), {}))
      steps.append(("knee", _seconds(rng, 0.7, 1.0, tempo), kneel))
    else:
      steps.append(("hold", _seconds(rng, 0.3, 1.0, 1.0), {}))
    steps += _get_up(rng, tempo, legs, plan.stand, from_fours=False)
  elif family == "crawl":
    steps = _get_down(rng, tempo, legs, upright=False) + _to_fours(rng, tempo)
    start_on_floor = rng.uniform() < 0.5
    if start_on_floor:
      steps.append(("mark", 0, {}))
    cycle = int(rng.integers(22, 33))
    cycles = int(rng.integers(2, 5)) if start_on_floor else int(rng.integers(1, 3))
    step = rng.uniform(0.12, 0.2)
    steps.append(("crawl", cycles * cycle, dict(cycles=cycles, step=step, cycle_frames=cycle,
                                                lead=int(rng.integers(2)))))
    end_on_floor = start_on_floor or rng.uniform() < 0.5
    if end_on_floor:
      steps.append(("hold", _seconds(rng, 0.2, 0.6, 1.0), {}))
    else:
      steps += _get_up(rng, tempo, legs, plan.stand, from_fours=True)
    p.update(start_on_floor=start_on_floor, end_on_floor=end_on_floor, cycles=cycles,
             speed=step * _FPS / cycle)
  elif family == "lie_down":
    steps = _get_down(rng, tempo, legs, upright=False) + _to_fours(rng, tempo)
    fours = steps[-1][2]
    steps.append(("knee", _seconds(rng, 0.9, 1.2, tempo), _prone(rng, legs)))
    variant = ("down", "up", "down_up")[rng.integers(3)]
    p["variant"] = variant
    if variant == "up":
      steps.append(("mark", 0, {}))
    steps.append(("hold", _seconds(rng, 0.3, 0.8, 1.0), {}))
    if variant != "down":
      steps.append(("knee", _seconds(rng, 0.8, 1.1, tempo), fours))
      steps += _get_up(rng, tempo, legs, plan.stand, from_fours=True)
    p.update(start_on_floor=variant == "up", end_on_floor=variant == "down")
  else:
    raise ValueError(f"unknown floor action family {family!r}")
  p["steps"] = steps
  p["frames"], p["first"] = _count(steps)
  return p


def _count(steps) -> tuple[int, int]:
  total, first = 0, 0
  for name, frames, _ in steps:
    if name == "mark":
      first = total
    total += frames
  return total - first, first


def build(p: dict, neutral: dict) -> dict:
  """Controls of a floor action with parameters p (from sample_params)."""
  plan = _Plan(p["performer"])
  for name, frames, values in p["steps"]:
    if name in ("toe", "knee"):
      plan.key(frames, name, **values)
    elif name == "hold":
      plan.hold(frames)
    elif name == "fours":
      values = dict(values)
      ahead, spread = values.pop("ahead"), values.pop("spread")
      values.pop("frames", None)
      if not values.pop("keep_hands", False):
        plan.plant_hands(plan.resolve("knee", **values), ahead, spread)
      plan.key(frames, "knee", **values)
    elif name == "crawl":
      plan.crawl(**values)
  assert len(plan.frames) == p["frames"] + p["first"], (len(plan.frames), p["frames"])
  return plan.controls(neutral, p["first"])


def captions(family: str, p: dict) -> list[str]:
  """Three paraphrases of a floor action."""
  if family == "kneel":
    if p["variant"] == "sit":
      return ["a person kneels down and sits back on their heels",
              "someone sits down on their knees and then stands up",
              "the person kneels on the floor, sits on the heels and gets back up"]
    return ["a person kneels down on both knees and stands back up",
            "someone gets down on their knees, then gets up again",
            "the person kneels on the floor for a moment"]
  if family == "crawl":
    slow = "slowly " if p["speed"] < 0.13 else ""
    if p["start_on_floor"]:
      return [f"a person crawls forward {slow}on hands and knees".replace("  ", " "),
              "someone crawls on all fours", f"the person crawls ahead {slow}".strip()]
    if p["end_on_floor"]:
      return ["a person gets down on all fours and crawls forward",
              "someone kneels down and crawls ahead on hands and knees",
              "the person drops to the floor and starts crawling"]
    return ["a person gets down on all fours, crawls forward and stands up",
            "someone crawls on hands and knees and then gets back up",
            "the person kneels down, crawls a few steps and stands up again"]
  if family == "lie_down":
    if p["variant"] == "down":
      return ["a person lies down on the floor on their stomach",
              "someone gets down and lies face down on the ground",
              "the person lowers to the floor and lies on the belly"]
    if p["variant"] == "up":
      return ["a person gets up from lying on the floor",
              "someone pushes up from the ground and stands up",
              "the person rises from lying face down to standing"]
    return ["a person lies down on the floor and gets back up",
            "someone lies face down on the ground, then stands up again",
            "the person gets down onto the stomach and back up to standing"]
  raise ValueError(f"unknown floor action family {family!r}")
