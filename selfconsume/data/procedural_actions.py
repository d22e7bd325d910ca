"""Action families of the procedural corpus: per-frame controls and captions.

An action of `num_frames` frames is a dict of control arrays (see `neutral_controls`) plus
three paraphrased captions composed from its parameters;
`procedural_kinematics.controls_to_joints` turns (concatenated) controls into joints.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from selfconsume.motion import skeleton

_FPS = float(skeleton.FPS)
_NEUTRAL_ABDUCT = 0.15
_NEUTRAL_ELBOW = 0.2
SIDES = ("left", "right")
_JUMP_SETTLE = 10   # frames of standing-to-crouch lead-in and landing-to-standing tail
_HOP_HEIGHT = 0.07  # m
COUNT_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# ----------------------------------------------------------------------------- controls
def neutral_controls(num_frames: int) -> dict[str, np.ndarray]:
  """Neutral standing controls for `num_frames` frames."""
  t = num_frames
  return {
      "vel": np.zeros((t, 2), np.float32),          # body frame (lateral +left, forward), m/frame
      "yaw_rate": np.zeros((t,), np.float32),       # rad/frame
      "height": np.zeros((t,), np.float32),         # pelvis offset from standing, m
      "air": np.zeros((t,), np.float32),            # airborne lift of pelvis and free feet, m
      "bounce": np.zeros((t,), np.float32),         # jump crouch of the pelvis, m (not smoothed:
                                                    # its take-off speed meets the flight's)
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
# A builder maps (rng, params, num_frames) -> (controls, three captions).
@dataclasses.dataclass(frozen=True)
class Action:
  """One sampled action: its family, parameters and duration in frames."""
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
  c = neutral_controls(n)
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
  c = neutral_controls(n)
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
          else "someone is running forward", "the person sprints in a straight line"
          if adv == "quickly" else "the person runs straight ahead"]
  return c, caps


def _backwards(rng, p, n):
  c = neutral_controls(n)
  env = _moving_envelope(n, 12)
  c["vel"][:, 1] = -p["speed"] / _FPS * env
  _gait(c, 1.0, 0.6, 0.06, rng)
  _arm_swing(c, 1.0, 0.2)
  steps = NUMBER_WORDS.get(p["steps"], str(p["steps"]))
  caps = ["a person walks backwards", f"someone takes {steps} steps backward",
          "the person moves back slowly" if p["speed"] < 0.7 else "the person jogs backwards"]
  return c, caps


def _side_step(rng, p, n):
  c = neutral_controls(n)
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
  c = neutral_controls(n)
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


_GRAVITY = 9.81
# Pelvis acceleration while the legs extend with the feet planted (ground reaction 2.2 body
# weights, within what people produce in a countermovement jump), and its deceleration while
# they absorb the landing.
_PUSH_ACCEL = 1.2 * _GRAVITY
_LAND_ACCEL = 1.5 * _GRAVITY


def _jump_phases(height: float) -> tuple[float, float, float, float]:
  """Take-off speed (m/s) and push-off, flight and landing durations (s) of a jump whose
  flight rises `height` m."""
  v0 = float(np.sqrt(2 * _GRAVITY * height))
  return v0, v0 / _PUSH_ACCEL, 2 * v0 / _GRAVITY, v0 / _LAND_ACCEL


def ballistic_cycle_frames(height: float) -> int:
  """Frames from the start of a push-off to the end of its landing, for a jump of `height` m."""
  _, push_s, flight_s, land_s = _jump_phases(height)
  return int(np.ceil((push_s + flight_s + land_s) * _FPS))


def _ramp(t: np.ndarray, t0: float, t1: float, y0: float, y1: float) -> np.ndarray:
  """Rest-to-rest cosine move from y0 at t0 to y1 at t1 (constant outside)."""
  u = np.clip((t - t0) / max(t1 - t0, 1e-6), 0.0, 1.0)
  return y0 + (y1 - y0) * (0.5 - 0.5 * np.cos(np.pi * u))


def _ballistic(c: dict, push_starts, height: float, distance: float = 0.0,
               settle_s: float = 0.4) -> np.ndarray:
  """Jumps that a body can perform: push-off, flight, landing; returns the flight mask.

  From rest at the bottom of a crouch the legs extend, feet planted, accelerating the pelvis
  upwards at _PUSH_ACCEL until it reaches standing height at take-off speed sqrt(2 g h);
  pelvis and feet then fly on one parabola (height h, duration 2 v0 / g); after touch-down
  the legs absorb the landing speed at _LAND_ACCEL. Between those phases, and from and back
  to standing (over up to `settle_s` seconds), the pelvis moves on rest-to-rest ramps. The
  forward speed (`distance` / flight time, at most the take-off speed) builds up over the
  push-off and is absorbed over the landing, so velocities are continuous everywhere.
  Writes the pelvis offset on the ground to c['bounce'], the flight lift to c['air'] and adds
  the forward motion to c['vel'].

  Args:
    c: controls, modified in place.
    push_starts: frame (float) at which each push-off starts.
    height: flight apex above standing, metres.
    distance: forward distance covered in flight, metres.
    settle_s: longest ramp from standing into the first crouch and back after the last landing.
  """
  n = len(c["air"])
  t = np.arange(n, dtype=np.float64) / _FPS
  v0, push_s, flight_s, land_s = _jump_phases(height)
  push_depth, land_depth = 0.5 * v0 * push_s, 0.5 * v0 * land_s
  speed = min(distance / flight_s, v0)
  bounce = np.zeros(n)
  air = np.zeros(n)
  forward = np.zeros(n)
  mask = np.zeros(n, bool)
  rest_t, rest_y = [max(0.0, push_starts[0] / _FPS - settle_s)], [0.0]
  for start in push_starts:
    t0 = start / _FPS
    up, down = t0 + push_s, t0 + push_s + flight_s
    end = down + land_s
    rest_t += [t0, end]
    rest_y += [-push_depth, -land_depth]
    push = (t >= t0) & (t < up)
    bounce[push] = -push_depth + 0.5 * _PUSH_ACCEL * (t[push] - t0) ** 2
    fly = (t > up) & (t < down)
    air[fly] = v0 * (t[fly] - up) - 0.5 * _GRAVITY * (t[fly] - up) ** 2
    mask |= fly
    land = (t >= down) & (t < end)
    bounce[land] = -v0 * (t[land] - down) + 0.5 * _LAND_ACCEL * (t[land] - down) ** 2
    # Forward position: accelerate over the push-off, glide, decelerate over the landing.
    forward += np.where(t < t0, 0.0, np.where(
        t < up, 0.5 * speed / push_s * (t - t0) ** 2, np.where(
            t < down, speed * (0.5 * push_s + t - up), np.where(
                t < end, speed * (0.5 * push_s + flight_s + (t - down)
                                  - 0.5 * (t - down) ** 2 / land_s),
                speed * (0.5 * push_s + flight_s + 0.5 * land_s)))))
  rest_t.append(min(rest_t[-1] + settle_s, t[-1]))
  rest_y.append(0.0)
  # Ramps between the phases: standing -> first crouch, each landing -> next crouch, last
  # landing -> standing.
  for k in range(0, len(rest_t) - 1, 2):
    inside = (t >= rest_t[k]) & (t < rest_t[k + 1])
    bounce[inside] = _ramp(t[inside], rest_t[k], rest_t[k + 1], rest_y[k], rest_y[k + 1])
  c["bounce"] += bounce.astype(np.float32)
  c["air"] += air.astype(np.float32)
  c["vel"][:-1, 1] += np.diff(forward).astype(np.float32)
  return mask


def _jump(rng, p, n, forward: bool):
  c = neutral_controls(n)
  count = p["count"]
  cycle = ballistic_cycle_frames(p["height"])
  period = (n - 2 * _JUMP_SETTLE) / count
  starts = [_JUMP_SETTLE + i * period + 0.5 * (period - cycle) for i in range(count)]
  mask = _ballistic(c, starts, p["height"], p["distance"] if forward else 0.0)
  c["contact"][mask] = False
  c["step_height"][:] = 0.03
  # Lean into the crouch; swing the arms up through push-off and flight.
  c["pitch"] += -1.0 * c["bounce"]
  c["flex"] += (1.2 * _pulses(n, [int(s) - 2 for s in starts], cycle + 4))[:, None]
  times = COUNT_WORDS.get(count, f"{count} times")
  if forward:
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
  c = neutral_controls(n)
  stand = 0 if p["side"] == "left" else 1
  free = 1 - stand
  env = _envelope(n, 10)
  c["override_w"][:, free] = env
  lateral = 0.1 if free == 0 else -0.1
  c["override"][:, free] = np.array([lateral, -0.6, -0.18], np.float32)
  c["contact"][:, free] = env < 0.02
  cycle = ballistic_cycle_frames(_HOP_HEIGHT)
  period = (n - 30) / p["count"]
  starts = [15 + i * period + 0.5 * (period - cycle) for i in range(p["count"])]
  mask = _ballistic(c, starts, _HOP_HEIGHT, settle_s=0.25)
  c["contact"][mask, stand] = False
  c["step_height"][:] = 0.02
  c["abduct"] += 0.5 * env[:, None]
  s = p["side"]
  caps = [f"a person hops on the {s} leg", f"someone balances on their {s} foot and hops "
          f"{COUNT_WORDS.get(p['count'], str(p['count']) + ' times')}",
          f"the person jumps on one leg, the {s} one"]
  return c, caps


def _squat(rng, p, n):
  c = neutral_controls(n)
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
  c = neutral_controls(n)
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
  c = neutral_controls(n)
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
  c = neutral_controls(n)
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
  c = neutral_controls(n)
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
  c = neutral_controls(n)
  env = _envelope(n, n // 3)
  c["pitch"] += p["depth"] * env
  c["height"] -= 0.03 * env
  deep = "deeply " if p["depth"] > 1.0 else ""
  caps = [f"a person bows {deep}".strip(), "someone bends forward at the waist and bows",
          "the person takes a " + ("deep " if deep else "") + "bow"]
  return c, caps


def sample_action(rng: np.random.Generator, family: str) -> Action:
  """Random parameters and duration (frames) of one action of `family`."""
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
    n = 2 * _JUMP_SETTLE + count * (ballistic_cycle_frames(p["height"])
                                    + int(rng.integers(5, 10)))
  elif family == "hop":
    count = int(rng.integers(2, 5))
    p = dict(side=side, count=count)
    n = 30 + count * (ballistic_cycle_frames(_HOP_HEIGHT) + int(rng.integers(2, 5)))
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


BUILDERS: dict[str, Callable] = {
    "walk": _walk, "run": _run, "walk_backwards": _backwards, "side_step": _side_step,
    "turn": _turn, "jump": lambda r, p, n: _jump(r, p, n, False),
    "jump_forward": lambda r, p, n: _jump(r, p, n, True), "hop": _hop, "squat": _squat,
    "wave": _wave, "raise_arms": _raise_arms, "kick": _kick, "punch": _punch, "bow": _bow,
}
FAMILIES = tuple(BUILDERS)
