"""The built-in text-motion corpus: kinematic motions on the 22-joint skeleton, written in
exactly the HumanML3D directory layout.

Each motion is one action or a sequence of two, drawn from 14 families (walk, run, walk
backwards, side-step, turn, jump in place, jump forward, hop on one leg, squat, wave, raise
arms, kick, punch, bow) with parameters (speed, curve, side, turn angle, count, amplitude,
duration). An action is a set of per-frame *controls* (body-frame root velocity, yaw rate,
pelvis height, airborne lift, torso lean, arm angles, foot contacts, foot targets); the two
actions of a sequence are concatenated and the controls turned into joints by

  * integrating the root trajectory and heading,
  * planting each foot for the whole of each contact interval (at its nominal place under
    the hip at mid-stance) and swinging it on a smooth arc between plants,
  * lowering the pelvis where a planted leg could not reach its foot,
  * two-bone inverse kinematics for the legs and forward kinematics for spine and arms,

so bone lengths are constant by construction, planted feet do not slide, the flat foot's
sole never goes below the ground and the body is airborne only in flight phases. Captions
(about three paraphrases per motion) are composed from the action parameters.

Run: python -m selfconsume.data.procedural --out DIR --size 2000 --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Callable, Sequence

import numpy as np

from selfconsume import outputs
from selfconsume.motion import features as features_lib
from selfconsume.motion import skeleton

CORPUS_VERSION = 1
MANIFEST = "manifest.json"
SPLIT_FRACTIONS = (("train", 0.80), ("val", 0.05), ("test", 0.15))
MAX_JOINT_FRAMES = skeleton.MAX_FRAMES + 1   # T joint frames give T - 1 feature rows
MIN_JOINT_FRAMES = skeleton.MIN_FRAMES + 1
# HumanML3D's cal_mean_variance divides the foot-contact std by this to weight them up.
FOOT_CONTACT_STD_BIAS = 5.0

_FPS = float(skeleton.FPS)
_ANKLE_HEIGHT = -float(skeleton.REST_OFFSETS[10][1])   # flat foot: toe on the ground
_STAND_HEIGHT = 0.90                                   # pelvis, knees slightly bent
_NOMINAL_FOOT = np.array([[0.09, 0.0, 0.0], [-0.09, 0.0, 0.0]], np.float32)  # left, right
_THIGH = float(skeleton.BONE_LENGTHS[4])
_SHIN = float(skeleton.BONE_LENGTHS[7])
_LEG_REACH = 0.975 * (_THIGH + _SHIN)
_NEUTRAL_ABDUCT = 0.15
_NEUTRAL_ELBOW = 0.2
SIDES = ("left", "right")
COUNT_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# ----------------------------------------------------------------------------- controls
def _controls(num_frames: int) -> dict[str, np.ndarray]:
  """Neutral standing controls for `num_frames` frames."""
  t = num_frames
  return {
      "vel": np.zeros((t, 2), np.float32),          # body frame (lateral +left, forward), m/frame
      "yaw_rate": np.zeros((t,), np.float32),       # rad/frame
      "height": np.zeros((t,), np.float32),         # pelvis offset from standing, m
      "air": np.zeros((t,), np.float32),            # airborne lift of pelvis and free feet, m
      "pitch": np.zeros((t,), np.float32),          # torso forward lean, rad
      "roll": np.zeros((t,), np.float32),           # torso side bend, rad
      "abduct": np.full((t, 2), _NEUTRAL_ABDUCT, np.float32),   # arm raise sideways [L, R]
      "flex": np.zeros((t, 2), np.float32),         # arm raise forwards
      "elbow": np.full((t, 2), _NEUTRAL_ELBOW, np.float32),
      "contact": np.ones((t, 2), bool),             # feet [L, R]
      "step_height": np.full((t,), 0.06, np.float32),
      "override_w": np.zeros((t, 2), np.float32),   # weight of a pelvis-relative foot target
      "override": np.zeros((t, 2, 3), np.float32),  # that target in the body frame
  }


def _envelope(num_frames: int, ramp: int) -> np.ndarray:
  """0 -> 1 -> 0 with smooth (raised cosine) ramps of `ramp` frames at both ends."""
  t = np.arange(num_frames, dtype=np.float32)
  ramp = max(1, min(ramp, num_frames // 2))
  up = np.clip(t / ramp, 0, 1)
  down = np.clip((num_frames - 1 - t) / ramp, 0, 1)
  return (0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))).astype(np.float32)


def _pulses(num_frames: int, starts, width: int) -> np.ndarray:
  """Sum of raised-cosine bumps of `width` frames starting at `starts` (peak 1)."""
  t = np.arange(num_frames, dtype=np.float32)
  out = np.zeros(num_frames, np.float32)
  for s in starts:
    u = (t - s) / width
    inside = (u >= 0) & (u <= 1)
    out += np.where(inside, 0.5 - 0.5 * np.cos(2 * np.pi * u), 0.0).astype(np.float32)
  return out


def _gait_edge(num_frames: int) -> int:
  return max(3, int(0.1 * num_frames))


def _moving_envelope(num_frames: int, ramp: int) -> np.ndarray:
  """Envelope for root motion: zero while both feet are planted at the ends of a gait."""
  edge = _gait_edge(num_frames)
  env = np.zeros(num_frames, np.float32)
  env[edge:num_frames - edge] = _envelope(num_frames - 2 * edge, ramp)
  return env


def _gait(c: dict, cycles_per_s: float, duty: float, step_height: float, rng) -> None:
  """Alternating foot contacts; both feet planted in the first and last few frames."""
  num_frames = len(c["yaw_rate"])
  phase = (np.arange(num_frames) * cycles_per_s / _FPS + rng.uniform(0, 1)) % 1.0
  left = phase < duty
  right = ((phase + 0.5) % 1.0) < duty
  contact = np.stack([left, right], -1)
  edge = _gait_edge(num_frames)
  contact[:edge] = True
  contact[-edge:] = True
  c["contact"] = contact
  c["step_height"][:] = step_height


def _arm_swing(c: dict, cycles_per_s: float, amplitude: float) -> None:
  num_frames = len(c["yaw_rate"])
  env = _envelope(num_frames, 8)
  phase = 2 * np.pi * np.arange(num_frames) * cycles_per_s / _FPS
  c["flex"][:, 0] = amplitude * np.sin(phase) * env
  c["flex"][:, 1] = -amplitude * np.sin(phase) * env
  c["elbow"] += 0.3 * env[:, None]


# ----------------------------------------------------------------------------- actions
# Each action: (rng, params) -> (controls, caption list). Params are sampled in _sample_*.
@dataclasses.dataclass(frozen=True)
class Action:
  family: str
  params: dict
  num_frames: int


def _speed_words(speed: float, slow: float, fast: float) -> tuple[str, str]:
  if speed < slow:
    return "slowly", "slow"
  if speed > fast:
    return "quickly", "fast"
  return "at a steady pace", "steady"


def _walk(rng, p, n):
  c = _controls(n)
  env = _moving_envelope(n, 12)
  c["vel"][:, 1] = p["speed"] / _FPS * env
  c["yaw_rate"] = np.float32(p["curve"] / _FPS) * env
  cycles = 0.75 + 0.3 * p["speed"]
  _gait(c, cycles, 0.6, 0.07, rng)
  _arm_swing(c, cycles, 0.35)
  c["height"] += -0.02 * env
  adv, adj = _speed_words(p["speed"], 1.0, 1.35)
  turn = "" if p["curve_dir"] is None else f" while curving to the {p['curve_dir']}"
  caps = [f"a person walks forward {adv}{turn}",
          f"someone takes a {adj} walk ahead{turn}",
          f"the person is walking straight {adv}" if not turn else
          f"the person walks in an arc to the {p['curve_dir']}"]
  return c, caps


def _run(rng, p, n):
  c = _controls(n)
  env = _moving_envelope(n, 10)
  c["vel"][:, 1] = p["speed"] / _FPS * env
  cycles = 1.35
  _gait(c, cycles, 0.36, 0.16, rng)
  _arm_swing(c, cycles, 0.7)
  c["elbow"] += 1.0 * env[:, None]
  c["pitch"] += 0.15 * env
  c["height"] += -0.05 * env
  adv, _ = _speed_words(p["speed"], 2.6, 3.1)
  caps = [f"a person runs forward {adv}", "someone jogs ahead quickly" if adv == "quickly"
          else "someone is running forward", f"the person sprints in a straight line"
          if adv == "quickly" else "the person runs straight ahead"]
  return c, caps


def _backwards(rng, p, n):
  c = _controls(n)
  env = _moving_envelope(n, 12)
  c["vel"][:, 1] = -p["speed"] / _FPS * env
  _gait(c, 1.0, 0.6, 0.06, rng)
  _arm_swing(c, 1.0, 0.2)
  steps = NUMBER_WORDS.get(p["steps"], str(p["steps"]))
  caps = ["a person walks backwards", f"someone takes {steps} steps backward",
          "the person moves back slowly" if p["speed"] < 0.7 else "the person jogs backwards"]
  return c, caps


def _side_step(rng, p, n):
  c = _controls(n)
  env = _moving_envelope(n, 12)
  sign = 1.0 if p["side"] == "left" else -1.0
  c["vel"][:, 0] = sign * p["speed"] / _FPS * env
  _gait(c, 1.0, 0.65, 0.05, rng)
  c["abduct"] += 0.2 * env[:, None]
  s = p["side"]
  caps = [f"a person side steps to the {s}", f"someone shuffles sideways to their {s}",
          f"the person moves to the {s} with side steps"]
  return c, caps


def _turn(rng, p, n):
  c = _controls(n)
  sign = 1.0 if p["side"] == "left" else -1.0   # turning left = counter-clockwise from above
  env = _moving_envelope(n, n // 3)
  c["yaw_rate"] = (sign * np.deg2rad(p["angle"]) * env / env.sum()).astype(np.float32)
  _gait(c, 1.2, 0.62, 0.05, rng)
  s = p["side"]
  if p["angle"] >= 180:
    caps = [f"a person turns around to the {s}", f"someone turns to face the opposite "
            f"direction, turning {s}", f"the person spins around over their {s} shoulder"]
  else:
    caps = [f"a person turns {p['angle']} degrees to the {s}", f"someone turns to their {s}",
            f"the person rotates in place towards the {s}"]
  return c, caps


def _flights(c: dict, starts, flight: int, height: float) -> np.ndarray:
  """Airborne parabolas of `flight` frames starting at `starts`; returns the flight mask."""
  n = len(c["air"])
  t = np.arange(n, dtype=np.float32)
  mask = np.zeros(n, bool)
  for s in starts:
    u = (t - s + 1) / (flight + 1)
    inside = (u > 0) & (u < 1)
    c["air"] += np.where(inside, 4 * height * u * (1 - u), 0).astype(np.float32)
    mask |= inside
  return mask


def _jump(rng, p, n, forward: bool):
  c = _controls(n)
  count = p["count"]
  flight = int(round(2 * np.sqrt(2 * p["height"] / 9.81) * _FPS))
  period = (n - 16) / count
  starts = [8 + int(i * period + 0.5 * period - flight / 2) for i in range(count)]
  mask = _flights(c, starts, flight, p["height"])
  c["contact"][mask] = False
  c["step_height"][:] = 0.03
  crouch = _pulses(n, [s - 6 for s in starts], 6) + _pulses(n, [s + flight for s in starts], 6)
  c["height"] -= 0.12 * crouch
  c["pitch"] += 0.2 * crouch
  c["flex"] += (1.2 * _pulses(n, [s - 2 for s in starts], flight + 4))[:, None]
  times = COUNT_WORDS.get(count, f"{count} times")
  if forward:
    c["vel"][mask, 1] = p["distance"] / flight
    caps = [f"a person jumps forward {times}", f"someone leaps ahead {times}",
            "the person does a long jump forward" if count == 1 else
            f"the person makes {NUMBER_WORDS[count]} forward jumps"]
  else:
    high = "high " if p["height"] > 0.25 else ""
    caps = [f"a person jumps {high}up and down {times}", f"someone jumps {high}in place {times}",
            "the person hops on the spot with both feet" if count > 1 else
            "the person does a single vertical jump"]
  return c, caps


def _hop(rng, p, n):
  c = _controls(n)
  stand = 0 if p["side"] == "left" else 1
  free = 1 - stand
  env = _envelope(n, 10)
  c["override_w"][:, free] = env
  lateral = 0.1 if free == 0 else -0.1
  c["override"][:, free] = np.array([lateral, -0.6, -0.18], np.float32)
  c["contact"][:, free] = env < 0.02
  flight = 5
  period = (n - 30) / p["count"]
  starts = [15 + int(i * period + 0.5 * period - flight / 2) for i in range(p["count"])]
  mask = _flights(c, starts, flight, 0.07)
  c["contact"][mask, stand] = False
  c["step_height"][:] = 0.02
  c["abduct"] += 0.5 * env[:, None]
  s = p["side"]
  caps = [f"a person hops on the {s} leg", f"someone balances on their {s} foot and hops "
          f"{COUNT_WORDS.get(p['count'], str(p['count']) + ' times')}",
          f"the person jumps on one leg, the {s} one"]
  return c, caps


def _squat(rng, p, n):
  c = _controls(n)
  count = p["count"]
  width = (n - 10) // count
  bumps = _pulses(n, [5 + i * width for i in range(count)], width)
  c["height"] -= p["depth"] * bumps
  c["pitch"] += 0.35 * bumps
  c["flex"] += (1.3 * bumps)[:, None]
  times = COUNT_WORDS.get(count, f"{count} times")
  deep = "deep " if p["depth"] > 0.32 else ""
  caps = [f"a person squats down {times}", f"someone does {NUMBER_WORDS[count]} {deep}squat"
          + ("s" if count > 1 else ""), f"the person bends the knees and crouches {times}"]
  return c, caps


def _wave(rng, p, n):
  c = _controls(n)
  arm = 0 if p["side"] == "left" else 1
  env = _envelope(n, 12)
  phase = 2 * np.pi * np.arange(n) * p["freq"] / _FPS
  c["abduct"][:, arm] += env * (2.2 + 0.25 * np.sin(phase))
  c["elbow"][:, arm] += env * (0.5 + 0.35 * np.sin(phase + 1.0))
  c["flex"][:, arm] += env * 0.3
  s = p["side"]
  how = " quickly" if p["freq"] > 1.7 else ""
  caps = [f"a person waves{how} with the {s} hand", f"someone raises their {s} arm and waves",
          f"the person waves hello with the {s} hand"]
  return c, caps


def _raise_arms(rng, p, n):
  c = _controls(n)
  env = _envelope(n, n // 3)
  arms = {"both": (0, 1), "left": (0,), "right": (1,)}[p["which"]]
  for a in arms:
    c["flex"][:, a] += p["amount"] * env
  if p["which"] == "both":
    caps = ["a person raises both arms over the head", "someone lifts their arms up and "
            "lowers them again", "the person puts both hands up in the air"]
  else:
    s = p["which"]
    caps = [f"a person raises the {s} arm", f"someone lifts their {s} hand up high",
            f"the person puts the {s} hand up and then down"]
  return c, caps


def _kick(rng, p, n):
  c = _controls(n)
  foot = 0 if p["side"] == "left" else 1
  count = p["count"]
  width = (n - 10) // count
  bumps = _pulses(n, [5 + i * width for i in range(count)], width)
  lateral = 0.09 if foot == 0 else -0.09
  c["override"][:, foot] = np.array([lateral, -0.5, 0.5], np.float32)
  c["override_w"][:, foot] = bumps
  c["contact"][:, foot] = bumps < 0.01
  c["step_height"][:] = 0.05
  c["pitch"] -= 0.12 * bumps
  c["abduct"] += (0.5 * bumps)[:, None]
  s = p["side"]
  times = COUNT_WORDS.get(count, f"{count} times")
  caps = [f"a person kicks with the {s} leg {times}", f"someone kicks forward using the {s} "
          "foot", f"the person does a {s} footed kick" if count == 1 else
          f"the person kicks {times} with the {s} leg"]
  return c, caps


def _punch(rng, p, n):
  c = _controls(n)
  arm = 0 if p["side"] == "left" else 1
  env = _envelope(n, 10)
  c["flex"] += (0.5 * env)[:, None]
  c["elbow"] += (1.8 * env)[:, None]
  count = p["count"]
  width = (n - 20) // count
  bumps = _pulses(n, [10 + i * width for i in range(count)], min(width, 10))
  c["flex"][:, arm] += 1.0 * bumps
  c["elbow"][:, arm] -= 1.9 * bumps
  c["roll"] += (0.1 if arm == 1 else -0.1) * bumps
  s = p["side"]
  times = COUNT_WORDS.get(count, f"{count} times")
  caps = [f"a person punches forward with the {s} hand {times}",
          f"someone throws {NUMBER_WORDS[count]} punch" + ("es" if count > 1 else "")
          + f" with the {s} arm", f"the person boxes with the {s} fist"]
  return c, caps


def _bow(rng, p, n):
  c = _controls(n)
  env = _envelope(n, n // 3)
  c["pitch"] += p["depth"] * env
  c["height"] -= 0.03 * env
  deep = "deeply " if p["depth"] > 1.0 else ""
  caps = [f"a person bows {deep}".strip(), "someone bends forward at the waist and bows",
          "the person takes a " + ("deep " if deep else "") + "bow"]
  return c, caps


def _sample(rng, family: str) -> Action:
  side = SIDES[rng.integers(2)]
  if family == "walk":
    curve_dir = [None, None, "left", "right"][rng.integers(4)]
    curve = 0.0 if curve_dir is None else rng.uniform(0.3, 0.6)
    curve *= -1.0 if curve_dir == "right" else 1.0
    p = dict(speed=rng.uniform(0.8, 1.5), curve=curve, curve_dir=curve_dir)
    n = rng.integers(60, 121)
  elif family == "run":
    p = dict(speed=rng.uniform(2.3, 3.3))
    n = rng.integers(50, 101)
  elif family == "walk_backwards":
    p = dict(speed=rng.uniform(0.5, 0.9))
    n = rng.integers(60, 111)
    p["steps"] = max(2, int(round(n / _FPS * 2.0 * 0.8)))
  elif family == "side_step":
    p = dict(side=side, speed=rng.uniform(0.3, 0.6))
    n = rng.integers(50, 91)
  elif family == "turn":
    p = dict(side=side, angle=int(rng.choice([90, 180])))
    n = rng.integers(40, 71) + (20 if p["angle"] == 180 else 0)
  elif family in ("jump", "jump_forward"):
    count = int(rng.integers(1, 4))
    p = dict(count=count, height=rng.uniform(0.15, 0.3), distance=rng.uniform(0.4, 0.8))
    n = 20 + count * int(rng.integers(18, 25))
  elif family == "hop":
    count = int(rng.integers(2, 5))
    p = dict(side=side, count=count)
    n = 30 + count * int(rng.integers(10, 14))
  elif family == "squat":
    count = int(rng.integers(1, 4))
    p = dict(count=count, depth=rng.uniform(0.2, 0.4))
    n = 10 + count * int(rng.integers(25, 36))
  elif family == "wave":
    p = dict(side=side, freq=rng.uniform(1.2, 2.0))
    n = rng.integers(50, 91)
  elif family == "raise_arms":
    p = dict(which=["both", "both", "left", "right"][rng.integers(4)],
             amount=rng.uniform(2.5, 3.0))
    n = rng.integers(45, 81)
  elif family == "kick":
    count = int(rng.integers(1, 3))
    p = dict(side=side, count=count)
    n = 10 + count * int(rng.integers(25, 33))
  elif family == "punch":
    count = int(rng.integers(1, 5))
    p = dict(side=side, count=count)
    n = 20 + count * int(rng.integers(12, 17))
  elif family == "bow":
    p = dict(depth=rng.uniform(0.7, 1.3))
    n = rng.integers(50, 81)
  else:
    raise ValueError(f"unknown action family {family!r}")
  return Action(family, p, int(n))


_BUILDERS: dict[str, Callable] = {
    "walk": _walk, "run": _run, "walk_backwards": _backwards, "side_step": _side_step,
    "turn": _turn, "jump": lambda r, p, n: _jump(r, p, n, False),
    "jump_forward": lambda r, p, n: _jump(r, p, n, True), "hop": _hop, "squat": _squat,
    "wave": _wave, "raise_arms": _raise_arms, "kick": _kick, "punch": _punch, "bow": _bow,
}
FAMILIES = tuple(_BUILDERS)


# ----------------------------------------------------------------------------- kinematics
def _rot_y(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                   np.stack([-s, z, c], -1)], -2)


def _rot_x(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                   np.stack([z, s, c], -1)], -2)


def _rot_z(angle: np.ndarray) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  z, o = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def _apply(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
  return np.einsum("...ij,...j->...i", rot, v)


def _smooth(x: np.ndarray, sigma: float = 1.5) -> np.ndarray:
  """Gaussian smoothing along the frame axis with edge padding (keeps boundaries smooth)."""
  radius = int(3 * sigma + 0.5)
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  k /= k.sum()
  pad = [(radius, radius)] + [(0, 0)] * (x.ndim - 1)
  xp = np.pad(x, pad, mode="edge")
  out = np.zeros_like(x)
  for i, w in enumerate(k):
    out += w * xp[i:i + len(x)]
  return out


def _intervals(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) runs of True."""
  padded = np.concatenate([[False], mask, [False]])
  edges = np.flatnonzero(padded[1:] != padded[:-1])
  return list(zip(edges[::2], edges[1::2]))


def _foot_track(contact, nominal, heading, step_height, air):
  """World ankle positions (T, 3) and foot yaw (T,) of one foot.

  Planted at its mid-stance nominal position for each contact interval; between plants the
  foot moves on a smoothstep in XZ and a sine arc (plus the airborne lift) in height.
  """
  pos = nominal.copy()
  pos[:, 1] = _ANKLE_HEIGHT + air
  yaw = heading.copy()
  plants = []
  for a, b in _intervals(contact):
    mid = (a + b - 1) // 2
    plant = np.array([nominal[mid, 0], _ANKLE_HEIGHT, nominal[mid, 2]], np.float32)
    pos[a:b] = plant
    yaw[a:b] = heading[mid]
    plants.append((a, b, plant, heading[mid]))
  for (_, b0, p0, y0), (a1, _, p1, y1) in zip(plants[:-1], plants[1:]):
    length = a1 - b0
    s = (np.arange(1, length + 1, dtype=np.float32)) / (length + 1)
    smooth = s * s * (3 - 2 * s)
    pos[b0:a1] = p0 + smooth[:, None] * (p1 - p0)
    pos[b0:a1, 1] = _ANKLE_HEIGHT + step_height[b0:a1] * np.sin(np.pi * s) + air[b0:a1]
    yaw[b0:a1] = y0 + smooth * (y1 - y0)
  return pos, yaw


def _two_bone_ik(hip, target, pole):
  """Knee and (reachable) ankle positions for thigh/shin lengths; the knee bends toward pole."""
  offset = target - hip
  dist = np.linalg.norm(offset, axis=-1, keepdims=True)
  direction = offset / np.maximum(dist, 1e-6)
  dist = np.clip(dist, abs(_THIGH - _SHIN) + 1e-3, _THIGH + _SHIN - 1e-4)
  ankle = hip + direction * dist
  along = (_THIGH ** 2 - _SHIN ** 2 + dist ** 2) / (2 * dist)
  across = np.sqrt(np.maximum(_THIGH ** 2 - along ** 2, 0.0))
  bend = pole - np.sum(pole * direction, -1, keepdims=True) * direction
  bend /= np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-6)
  return hip + direction * along + bend * across, ankle


def controls_to_joints(c: dict, start_xz: np.ndarray, start_heading: float) -> np.ndarray:
  """Global joint positions (T, 22, 3) for concatenated controls (see module docstring)."""
  num_frames = len(c["yaw_rate"])
  offsets = skeleton.REST_OFFSETS
  heading = start_heading + np.concatenate([[0.0], np.cumsum(c["yaw_rate"][:-1])])
  heading = heading.astype(np.float32)
  r_yaw = _rot_y(heading)
  vel = np.stack([c["vel"][:, 0], np.zeros(num_frames, np.float32), c["vel"][:, 1]], -1)
  world_vel = _apply(r_yaw, vel)
  root = np.zeros((num_frames, 3), np.float32)
  steps = np.concatenate([np.zeros((1, 2), np.float32), world_vel[:-1][:, [0, 2]]])
  root[:, [0, 2]] = start_xz + np.cumsum(steps, axis=0)
  # Feet: planted or swinging, or pulled towards a pelvis-relative target.
  ankles, foot_yaw = [], []
  for f in range(2):
    nominal = root + _apply(r_yaw, _NOMINAL_FOOT[f])
    pos, yaw = _foot_track(c["contact"][:, f], nominal, heading, c["step_height"], c["air"])
    ankles.append(pos)
    foot_yaw.append(yaw)
  ankles = np.stack(ankles, 1)
  foot_yaw = np.stack(foot_yaw, 1)
  # Pelvis height: desired, lowered where a planted foot would be out of reach.
  hips_local = offsets[[1, 2]]
  height = _STAND_HEIGHT + c["height"] + c["air"]
  for f in range(2):
    hip_xz = root[:, [0, 2]] + _apply(r_yaw, hips_local[f])[:, [0, 2]]
    horiz = np.linalg.norm(ankles[:, f, [0, 2]] - hip_xz, axis=-1)
    reach = np.sqrt(np.maximum(_LEG_REACH ** 2 - horiz ** 2, 0.0))
    limit = ankles[:, f, 1] + reach - hips_local[f, 1]
    free = c["override_w"][:, f] > 0
    height = np.where(c["contact"][:, f] & ~free, np.minimum(height, limit), height)
  root[:, 1] = height
  # Pelvis-relative foot targets (kicks, a held foot while hopping).
  ankles_xz = [ankles[:, f][:, [0, 2]].copy() for f in range(2)]
  for f in range(2):
    w = c["override_w"][:, f][:, None]
    target = root + _apply(r_yaw, c["override"][:, f])
    target[:, 1] = np.maximum(target[:, 1], _ANKLE_HEIGHT)
    # Lift before moving sideways, so a foot leaving the ground does not slide on it.
    w_xz = w * w
    ankles[:, f, 1] = (1 - w[:, 0]) * ankles[:, f, 1] + w[:, 0] * target[:, 1]
    ankles[:, f, 0] = (1 - w_xz[:, 0]) * ankles_xz[f][:, 0] + w_xz[:, 0] * target[:, 0]
    ankles[:, f, 2] = (1 - w_xz[:, 0]) * ankles_xz[f][:, 1] + w_xz[:, 0] * target[:, 2]

  joints = np.zeros((num_frames, skeleton.NUM_JOINTS, 3), np.float32)
  joints[:, 0] = root
  # Spine bends progressively: spine1, spine2 take part of the lean, spine3 and above all.
  torso = {}
  for j, share in ((3, 0.4), (6, 0.7), (9, 1.0)):
    torso[j] = r_yaw @ _rot_x(share * c["pitch"]) @ _rot_z(share * c["roll"])
  chest = torso[9]
  for j in (3, 6, 9):
    joints[:, j] = joints[:, skeleton.PARENTS[j]] + _apply(torso[j], offsets[j])
  for j in (12, 15, 13, 14, 16, 17):
    joints[:, j] = joints[:, skeleton.PARENTS[j]] + _apply(chest, offsets[j])
  for arm, (elbow, wrist) in enumerate(((18, 20), (19, 21))):
    side = 1.0 if arm == 0 else -1.0
    upper = chest @ _rot_x(-c["flex"][:, arm]) @ _rot_z(side * (c["abduct"][:, arm] - np.pi / 2))
    fore = upper @ _rot_y(-side * c["elbow"][:, arm])
    joints[:, elbow] = joints[:, skeleton.PARENTS[elbow]] + _apply(upper, offsets[elbow])
    joints[:, wrist] = joints[:, elbow] + _apply(fore, offsets[wrist])
  for f, (hip, knee, ankle, toe) in enumerate(((1, 4, 7, 10), (2, 5, 8, 11))):
    joints[:, hip] = root + _apply(r_yaw, offsets[hip])
    foot_rot = _rot_y(foot_yaw[:, f])
    pole = _apply(foot_rot, np.array([0.0, 0.0, 1.0], np.float32))
    target = ankles[:, f]
    # Swinging or pulled feet may be out of reach: bring them closer to the hip.
    joints[:, knee], joints[:, ankle] = _two_bone_ik(joints[:, hip], target, pole)
    joints[:, toe] = joints[:, ankle] + _apply(foot_rot, offsets[toe])
  return joints


def _merge(parts: list[dict]) -> dict:
  merged = {k: np.concatenate([p[k] for p in parts], 0) for k in parts[0]}
  for k in ("vel", "yaw_rate", "height", "pitch", "roll", "abduct", "flex", "elbow"):
    merged[k] = _smooth(merged[k]).astype(np.float32)
  return merged


def _tag(word: str) -> str:
  verbs = {"walks", "runs", "jumps", "turns", "waves", "kicks", "punches", "bows", "squats",
           "hops", "raises", "lifts", "takes", "moves", "steps", "spins", "leaps", "does",
           "throws", "boxes", "bends", "crouches", "puts", "rotates", "balances", "shuffles",
           "jogs", "sprints", "makes", "lowers", "is", "walking", "running", "side"}
  nouns = {"person", "someone", "man", "woman", "figure", "arm", "arms", "hand", "hands",
           "leg", "foot", "feet", "head",
           "fist", "knees", "waist", "steps", "squat", "squats", "jump", "jumps", "bow", "arc",
           "line", "kick", "punch", "punches", "spot", "air", "walk", "shoulder", "direction",
           "place", "degrees", "pace", "times"}
  if word in verbs:
    return f"{word}/VERB"
  if word in nouns:
    return f"{word}/NOUN"
  if word in ("left", "right", "slow", "fast", "steady", "deep", "long", "single"):
    return f"{word}/ADJ"
  return f"{word}/OTHER" if word not in ("a", "the") else f"{word}/DET"


def caption_line(caption: str, start: float = 0.0, end: float = 0.0) -> str:
  """One HumanML3D texts/ line: caption#word/POS ...#start#end."""
  tokens = " ".join(_tag(w) for w in caption.replace(",", "").split())
  return f"{caption}#{tokens}#{start}#{end}"


SUBJECTS = ("a person", "the person", "someone", "a man", "a woman", "a figure")


def _predicate(caption: str) -> str:
  """'a person walks forward' -> 'walks forward' (drops the subject)."""
  for subject in SUBJECTS:
    if caption.startswith(subject + " "):
      return caption[len(subject) + 1:]
  return caption


def _with_subject(caption: str, rng: np.random.Generator) -> str:
  """Swaps the template's subject for a random one half of the time (as annotators vary)."""
  if rng.uniform() < 0.5:
    return caption
  predicate = _predicate(caption)
  return caption if predicate == caption else f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {predicate}"


def sample_motion(rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[str]]:
  """One motion: global joints (T, 22, 3) with 41 <= T <= 197, captions, family names."""
  while True:
    first = _sample(rng, FAMILIES[rng.integers(len(FAMILIES))])
    actions = [first]
    if rng.uniform() < 0.4:
      second = _sample(rng, FAMILIES[rng.integers(len(FAMILIES))])
      if first.num_frames + second.num_frames <= MAX_JOINT_FRAMES:
        actions.append(second)
    if sum(a.num_frames for a in actions) >= MIN_JOINT_FRAMES:
      break
  parts, caps = [], []
  for a in actions:
    ctrl, c = _BUILDERS[a.family](rng, a.params, a.num_frames)
    parts.append(ctrl)
    caps.append(c)
  controls = _merge(parts)
  joints = controls_to_joints(controls, rng.uniform(-2, 2, 2).astype(np.float32),
                              float(rng.uniform(-np.pi, np.pi)))
  if len(caps) == 1:
    captions = [_with_subject(c, rng) for c in caps[0]]
  else:
    order = rng.permutation(3)
    a, b = caps[0], caps[1]
    captions = [f"{_with_subject(a[order[0]], rng)} and then {_predicate(b[order[1]])}",
                f"{_with_subject(a[order[1]], rng)}, after that {_predicate(b[order[2]])}",
                f"someone first {_predicate(a[order[2]])}, then {_predicate(b[order[0]])}"]
  return joints.astype(np.float32), captions, [a.family for a in actions]


# ----------------------------------------------------------------------------- corpus
def motion_features(joint_list: Sequence[np.ndarray]) -> list[np.ndarray]:
  """HumanML3D features (T_i - 1, 263) of each (T_i, 22, 3) motion (T_i <= 197)."""
  return features_lib.joints_to_features_list(joint_list)


def normalization_stats(motions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """HumanML3D's Mean / Std: per-dimension mean; std averaged within each feature group
  (foot contacts' std divided by 5). Groups with zero spread get std 1."""
  data = np.concatenate(motions, 0).astype(np.float64)
  mean = data.mean(0)
  std = data.std(0)
  f = features_lib
  for group in (f.ROOT_ROT_VEL, f.ROOT_LIN_VEL, f.ROOT_Y, f.RIC, f.ROT6D, f.LOCAL_VEL,
                f.FOOT_CONTACT):
    value = std[group].mean()
    if group == f.FOOT_CONTACT:
      value /= FOOT_CONTACT_STD_BIAS
    std[group] = value if value > 1e-8 else 1.0
  return mean.astype(np.float32), std.astype(np.float32)


def write_corpus(out_dir: str, size: int, seed: int) -> None:
  """Writes `size` motions in the HumanML3D layout under out_dir (deterministic by seed)."""
  if size < 20:
    raise ValueError(f"procedural corpus size must be >= 20 (one per split), got {size}")
  rng = np.random.default_rng(seed)
  joints, captions, families = [], [], []
  for _ in range(size):
    j, c, fam = sample_motion(rng)
    joints.append(j)
    captions.append(c)
    families.append(fam)
  feats = motion_features(joints)
  recovered = features_lib.features_to_joints_list(feats)
  ids = [f"{i:06d}" for i in range(size)]
  for sub in ("new_joint_vecs", "new_joints", "texts"):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  for i, motion_id in enumerate(ids):
    np.save(os.path.join(out_dir, "new_joint_vecs", motion_id + ".npy"), feats[i])
    np.save(os.path.join(out_dir, "new_joints", motion_id + ".npy"),
            recovered[i])
    with open(os.path.join(out_dir, "texts", motion_id + ".txt"), "w") as f:
      f.write("\n".join(caption_line(c) for c in captions[i]) + "\n")
  order = np.random.default_rng(seed + 1).permutation(size)
  splits, start = {}, 0
  for k, (name, fraction) in enumerate(SPLIT_FRACTIONS):
    stop = size if k == len(SPLIT_FRACTIONS) - 1 else start + max(1, int(round(fraction * size)))
    splits[name] = sorted(ids[i] for i in order[start:stop])
    start = stop
  for name, split_ids in splits.items():
    with open(os.path.join(out_dir, name + ".txt"), "w") as f:
      f.write("\n".join(split_ids) + "\n")
  index = {m: i for i, m in enumerate(ids)}
  mean, std = normalization_stats([feats[index[m]] for m in splits["train"]])
  np.save(os.path.join(out_dir, "Mean.npy"), mean)
  np.save(os.path.join(out_dir, "Std.npy"), std)
  family_counts = {}
  for fam in families:
    key = "+".join(fam)
    family_counts[key] = family_counts.get(key, 0) + 1
  outputs.write_json(os.path.join(out_dir, MANIFEST), {
      "kind": "selfconsume.procedural", "version": CORPUS_VERSION, "size": size, "seed": seed,
      "splits": {k: len(v) for k, v in splits.items()}, "families": list(FAMILIES),
      "sequence_counts": family_counts})


def ensure_corpus(root: str, size: int, seed: int) -> str:
  """Builds the corpus under root unless a manifest there says it has this size/seed."""
  path = os.path.join(root, MANIFEST)
  if os.path.exists(path):
    try:
      with open(path) as f:
        manifest = json.load(f)
      if (manifest.get("kind") == "selfconsume.procedural"
          and manifest.get("version") == CORPUS_VERSION
          and manifest.get("size") == size and manifest.get("seed") == seed):
        return root
    except (OSError, json.JSONDecodeError):
      pass
    os.remove(path)
  write_corpus(root, size, seed)
  return root


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--size", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  start = time.time()
  write_corpus(args.out, args.size, args.seed)
  print(json.dumps({"out": args.out, "size": args.size, "seed": args.seed,
                    "seconds": round(time.time() - start, 2)}))


if __name__ == "__main__":
  main()
