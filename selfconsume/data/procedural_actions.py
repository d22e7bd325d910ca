"""Action families of the procedural corpus: per-frame controls and captions.

An action of `num_frames` frames is a dict of control arrays (see `neutral_controls`) plus
three paraphrased captions composed from its parameters;
`procedural_kinematics.controls_to_joints` turns (concatenated) controls into joints.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from selfconsume.data import procedural_floor
from selfconsume.data import procedural_kinematics as kin
from selfconsume.motion import skeleton

_FPS = float(skeleton.FPS)
_NEUTRAL_ABDUCT = 0.15
_NEUTRAL_ELBOW = 0.2
SIDES = ("left", "right")
_JUMP_SETTLE = 10   # frames of standing-to-crouch lead-in and landing-to-standing tail
_HOP_HEIGHT = 0.07  # m
COUNT_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# ----------------------------------------------------------------------------- performer
def sample_performer(rng: np.random.Generator) -> dict:
  """The person performing a motion, as far as HumanML3D's retargeting lets it show.

  HumanML3D retargets every motion to one skeleton: bone directions are kept, bone lengths
  replaced, and the root trajectory scaled by the ratio of leg lengths. So a performer's
  proportions survive only as (a) timing and distances relative to leg length: by Froude
  similarity a performer with legs `leg_scale` times ours walks with speeds and cadence
  scaled by leg_scale ** -0.5 once retargeted (we draw leg_scale in 0.85..1.15, adult range),
  and (b) posture, i.e. bone directions: stance width, how the arms hang (abduction, elbow
  bend) and a slight forward lean. The corpus is written on the one skeleton of
  selfconsume.motion.skeleton, like HumanML3D's new_joints, and that is also the body of the
  physics corrector's humanoid.
  """
  return {"leg_scale": float(rng.uniform(0.85, 1.15)), "stance": float(rng.uniform(0.075, 0.11)),
          "abduct": float(rng.uniform(0.08, 0.25)), "elbow": float(rng.uniform(0.1, 0.4)),
          "lean": float(rng.uniform(-0.02, 0.08)), "head": float(rng.uniform(-0.15, 0.25))}


DEFAULT_PERFORMER = {"leg_scale": 1.0, "stance": 0.09, "abduct": _NEUTRAL_ABDUCT,
                     "elbow": _NEUTRAL_ELBOW, "lean": 0.0, "head": 0.0}


# ----------------------------------------------------------------------------- controls
def neutral_controls(num_frames: int, performer: dict | None = None) -> dict[str, np.ndarray]:
  """Neutral standing controls for `num_frames` frames (of `performer`, default ours)."""
  t = num_frames
  body = DEFAULT_PERFORMER if performer is None else performer
  zeros2 = lambda: np.zeros((t, 2), np.float32)
  zeros23 = lambda: np.zeros((t, 2, 3), np.float32)
  return {
      "vel": zeros2(),                              # body frame (lateral +left, forward), m/frame
      "yaw_rate": np.zeros((t,), np.float32),       # rad/frame
      "shift": zeros2(),                            # pelvis XZ offset in the body frame (lateral,
                                                    # forward), m: moves the pelvis, not the feet
      "height": np.zeros((t,), np.float32),         # pelvis offset from standing, m
      "air": np.zeros((t,), np.float32),            # airborne lift of pelvis and free feet, m
      "bounce": np.zeros((t,), np.float32),         # jump crouch of the pelvis, m (not smoothed:
                                                    # its take-off speed meets the flight's)
      "pitch": np.full((t,), body["lean"], np.float32),  # torso forward lean, rad
      "roll": np.zeros((t,), np.float32),           # torso side bend, rad
      "twist": np.zeros((t,), np.float32),          # torso twist about the spine (+ left), rad
      "head_pitch": np.full((t,), body["head"], np.float32),   # head nod forward, rad
      "pelvis_pitch": np.zeros((t,), np.float32),   # pelvis tilt forward, rad
      "pelvis_roll": np.zeros((t,), np.float32),    # pelvis roll (+ lowers the right hip), rad
      "abduct": np.full((t, 2), body["abduct"], np.float32),   # arm raise sideways [L, R]
      "flex": zeros2(),                             # arm raise forwards
      "elbow": np.full((t, 2), body["elbow"], np.float32),
      "contact": np.ones((t, 2), bool),             # feet [L, R]
      "step_height": np.full((t,), 0.06, np.float32),
      "override_w": zeros2(),                       # weight of a pelvis-relative foot target
      "override": zeros23(),                        # that target in the body frame
      # Targets in the motion's start frame (see procedural_kinematics), with weights.
      "ankle_w": zeros2(), "ankle_at": zeros23(),
      "toe_w": zeros2(), "toe_at": zeros23(),
      "knee_pole_w": zeros2(), "knee_pole": zeros23(),    # direction the knee bends towards
      "wrist_w": zeros2(), "wrist_at": zeros23(),
      # Wrist targets from the point on the floor under the (unshifted) pelvis, in the body
      # frame (y = height above the floor).
      "reach_w": zeros2(), "reach": zeros23(),
      "elbow_pole": zeros23(),                      # body frame: where a pulled elbow points
      "exact": np.zeros((t,), bool),                # frames whose controls are not smoothed
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


def _gait(c: dict, cycles_per_s, duty: float, step_height: float, rng) -> None:
  """Alternating foot contacts; both feet planted in the first and last few frames.
  `cycles_per_s` is a number or one rate per frame."""
  num_frames = len(c["yaw_rate"])
  rate = np.broadcast_to(np.asarray(cycles_per_s, np.float64), (num_frames,))
  phase = np.concatenate([[0.0], np.cumsum(rate[:-1])]) / _FPS
  phase = (phase + rng.uniform(0, 1)) % 1.0
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
  """One sampled action: its family, parameters and duration in frames.

  `first_only`: planned in the motion's start frame (the floor actions), so it must open the
  motion; `ends_standing`: another action may follow it.
  """
  family: str
  params: dict
  num_frames: int
  first_only: bool = False
  ends_standing: bool = True


def _keys(num_frames: int, keys: list[tuple[int, float]], value0: float = 0.0) -> np.ndarray:
  """A track (num_frames,) moving rest-to-rest from value to value: keys are (frame, value),
  frames increasing; the value before the first key is value0, after the last key held."""
  out = np.full(num_frames, value0, np.float32)
  t = np.arange(num_frames, dtype=np.float32)
  prev_t, prev_v = 0, value0
  for frame, value in keys:
    span = max(frame - prev_t, 1)
    u = np.clip((t - prev_t) / span, 0.0, 1.0)
    inside = t >= prev_t
    out = np.where(inside, prev_v + (value - prev_v) * (0.5 - 0.5 * np.cos(np.pi * u)), out)
    prev_t, prev_v = frame, value
  return out.astype(np.float32)


def _speed_words(speed: float, slow: float, fast: float) -> tuple[str, str]:
  if speed < slow:
    return "slowly", "slow"
  if speed > fast:
    return "quickly", "fast"
  return "at a steady pace", "steady"


def _cadence(p: dict) -> float:
  """Step-rate factor of the performer (Froude similarity, see sample_performer)."""
  return p["performer"]["leg_scale"] ** -0.5


def _walk(rng, p, n):
  c = neutral_controls(n, p["performer"])
  env = _moving_envelope(n, 12)
  c["vel"][:, 1] = p["speed"] / _FPS * env
  c["yaw_rate"] = np.float32(p["curve"] / _FPS) * env
  cycles = (0.75 + 0.3 * p["speed"]) * _cadence(p)
  _gait(c, cycles, 0.6, 0.07, rng)
  _arm_swing(c, cycles, 0.35)
  c["height"] += -0.02 * env
  adv, adj = _speed_words(p["speed"], 1.0, 1.35)
  if p.get("circle"):
    d = p["curve_dir"]
    return c, [f"a person walks in a circle to the {d}", f"someone walks around in a {adj} "
               f"circle", f"the person circles around {adv}, turning {d}"]
  turn = "" if p["curve_dir"] is None else f" while curving to the {p['curve_dir']}"
  caps = [f"a person walks forward {adv}{turn}",
          f"someone takes a {adj} walk ahead{turn}",
          f"the person is walking straight {adv}" if not turn else
          f"the person walks in an arc to the {p['curve_dir']}"]
  return c, caps


def _run(rng, p, n):
  c = neutral_controls(n, p["performer"])
  env = _moving_envelope(n, 10)
  c["vel"][:, 1] = p["speed"] / _FPS * env
  cycles = 1.35 * _cadence(p)
  _gait(c, cycles, 0.36, 0.16, rng)
  _arm_swing(c, cycles, 0.7)
  c["elbow"] += 1.0 * env[:, None]
  c["pitch"] += 0.15 * env
  c["height"] += -0.05 * env
  c["yaw_rate"] = np.float32(p["curve"] / _FPS) * env
  adv, _ = _speed_words(p["speed"], 2.6, 3.1)
  if p["curve_dir"] is not None:
    d = p["curve_dir"]
    return c, [f"a person runs in a curve to the {d}", f"someone jogs around to their {d}",
               f"the person runs {adv}, bending to the {d}"]
  caps = [f"a person runs forward {adv}", "someone jogs ahead quickly" if adv == "quickly"
          else "someone is running forward", "the person sprints in a straight line"
          if adv == "quickly" else "the person runs straight ahead"]
  return c, caps


def _backwards(rng, p, n):
  c = neutral_controls(n, p["performer"])
  env = _moving_envelope(n, 12)
  c["vel"][:, 1] = -p["speed"] / _FPS * env
  _gait(c, _cadence(p), 0.6, 0.06, rng)
  _arm_swing(c, _cadence(p), 0.2)
  steps = NUMBER_WORDS.get(p["steps"], str(p["steps"]))
  caps = ["a person walks backwards", f"someone takes {steps} steps backward",
          "the person moves back slowly" if p["speed"] < 0.7 else "the person jogs backwards"]
  return c, caps


def _side_step(rng, p, n):
  c = neutral_controls(n, p["performer"])
  env = _moving_envelope(n, 12)
  sign = 1.0 if p["side"] == "left" else -1.0
  c["vel"][:, 0] = sign * p["speed"] / _FPS * env
  _gait(c, _cadence(p), 0.65, 0.05, rng)
  c["abduct"] += 0.2 * env[:, None]
  s = p["side"]
  caps = [f"a person side steps to the {s}", f"someone shuffles sideways to their {s}",
          f"the person moves to the {s} with side steps"]
  return c, caps


def _turn(rng, p, n):
  c = neutral_controls(n, p["performer"])
  sign = 1.0 if p["side"] == "left" else -1.0   # turning left = counter-clockwise from above
  env = _moving_envelope(n, n // 3)
  c["yaw_rate"] = (sign * np.deg2rad(p["angle"]) * env / env.sum()).astype(np.float32)
  _gait(c, 1.2 * _cadence(p), 0.62, 0.05, rng)
  s = p["side"]
  if p["angle"] >= 360:
    times = "twice" if p["angle"] >= 720 else "once"
    caps = [f"a person spins around {times} to the {s}", f"someone turns in a full circle "
            f"to their {s}" if p["angle"] < 720 else "someone spins around two full turns",
            f"the person pivots all the way around to the {s}"]
  elif p["angle"] == 270:
    caps = [f"a person turns three quarters of the way around to the {s}",
            f"someone turns to the {s} until facing sideways",
            f"the person rotates in place over the {s} shoulder"]
  elif p["angle"] >= 180:
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
  c = neutral_controls(n, p["performer"])
  count = p["count"]
  cycle = ballistic_cycle_frames(p["height"])
  period = (n - 2 * _JUMP_SETTLE) / count
  starts = [_JUMP_SETTLE + i * period + 0.5 * (period - cycle) for i in range(count)]
  mask = _ballistic(c, starts, p["height"], p["distance"] if forward else 0.0)
  c["contact"][mask] = False
  c["step_height"][:] = 0.03
  turn = p.get("turn", 0)
  if turn:   # the body turns only while it is in the air
    sign = 1.0 if p["side"] == "left" else -1.0
    c["yaw_rate"][mask] = np.float32(sign * np.deg2rad(turn) * count / mask.sum())
  # Lean into the crouch; swing the arms up through push-off and flight.
  c["pitch"] += -1.0 * c["bounce"]
  c["flex"] += (1.2 * _pulses(n, [int(s) - 2 for s in starts], cycle + 4))[:, None]
  times = COUNT_WORDS.get(count, f"{count} times")
  if forward:
    caps = [f"a person jumps forward {times}", f"someone leaps ahead {times}",
            "the person does a long jump forward" if count == 1 else
            f"the person makes {NUMBER_WORDS[count]} forward jumps"]
  elif turn:
    s = p["side"]
    what = "turns around" if turn == 180 else "makes a quarter turn"
    caps = [f"a person jumps and {what} in the air" + ("" if count == 1 else f" {times}"),
            f"someone does a jump turn to the {s}" if count == 1 else
            f"someone jumps {times}, turning to the {s} each time",
            f"the person jumps up and spins {turn} degrees to the {s}"]
  else:
    high = "high " if p["height"] > 0.25 else ""
    caps = [f"a person jumps {high}up and down {times}", f"someone jumps {high}in place {times}",
            "the person hops on the spot with both feet" if count > 1 else
            "the person does a single vertical jump"]
  return c, caps


def _hop(rng, p, n):
  c = neutral_controls(n, p["performer"])
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
  c = neutral_controls(n, p["performer"])
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
  c = neutral_controls(n, p["performer"])
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
  c = neutral_controls(n, p["performer"])
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
  c = neutral_controls(n, p["performer"])
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
  c = neutral_controls(n, p["performer"])
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
  c = neutral_controls(n, p["performer"])
  env = _envelope(n, n // 3)
  c["pitch"] += p["depth"] * env
  c["height"] -= 0.03 * env
  deep = "deeply " if p["depth"] > 1.0 else ""
  caps = [f"a person bows {deep}".strip(), "someone bends forward at the waist and bows",
          "the person takes a " + ("deep " if deep else "") + "bow"]
  return c, caps


def _reachable_height(performer: dict, depth: float, back: float, lean: float,
                      pelvis_pitch: float, target_xz: tuple[float, float], wanted: float
                      ) -> float:
  """The lowest height >= `wanted` that a hand can reach at body-frame target_xz (from
  the point under the unshifted pelvis) in a crouch of this depth, shift and lean."""
  root = np.array([[0.0, kin.STAND_HEIGHT - depth, -back]])
  rot = kin.pelvis_rotation(np.zeros(1), np.array([pelvis_pitch]), np.zeros(1))
  body, _ = kin.upper_body(root, rot, np.array([performer["lean"] + lean]), np.zeros(1),
                           np.zeros(1), np.zeros(1))
  shoulder = body[16][0]
  across = np.hypot(abs(target_xz[0]) - shoulder[0], target_xz[1] - shoulder[2])
  reach = 0.97 * (kin.UPPER_ARM + kin.FOREARM)
  return float(max(wanted, shoulder[1] - np.sqrt(max(reach ** 2 - across ** 2, 0.0))))


def _crouch(rng, p, n):
  """Down into a deep squat, feet flat (the hips go back for balance), hold, back up."""
  c = neutral_controls(n, p["performer"])
  down, up = p["down"], p["up"]
  keys = [(down, 1.0), (n - 1 - up, 1.0), (n - 1, 0.0)]
  env = _keys(n, keys)
  c["height"] -= p["depth"] * env
  c["shift"][:, 1] -= p["back"] * env
  c["pitch"] += p["lean"] * env
  c["pelvis_pitch"] += p["pelvis"] * env
  c["head_pitch"] -= 0.35 * env
  style = p["style"]
  if style == "arms":
    c["flex"] += (p["arms"] * env)[:, None]
  elif style == "knees":
    c["flex"] += (0.7 * env)[:, None]
    c["elbow"] += (1.0 * env)[:, None]
  else:   # touch the floor with one hand in front
    hand = 0 if p["side"] == "left" else 1
    touch = _keys(n, [(down + 4, 1.0), (n - 1 - up - 4, 1.0), (n - 5, 0.0)])
    c["reach_w"][:, hand] = touch
    c["reach"][:, hand] = np.array([0.14 if hand == 0 else -0.14, p["reach_y"], p["ahead"]],
                                   np.float32)
    c["elbow_pole"][:, hand] = np.array([0.3 if hand == 0 else -0.3, 0.0, -1.0], np.float32)
  deep = "low " if p["depth"] > 0.45 else ""
  if style == "touch":
    caps = [f"a person crouches down {deep}and touches the ground",
            f"someone squats and puts the {p['side']} hand on the floor",
            "the person crouches to touch the floor and stands back up"]
  else:
    caps = [f"a person crouches down {deep}and stands back up".replace("  ", " "),
            "someone crouches down and waits, then rises",
            "the person squats down low and holds it" if style == "arms" else
            "the person crouches with the hands on the knees"]
  return c, caps


def _pick_up(rng, p, n):
  """Bend down, pick something up from the floor with one hand, stand up; maybe throw it.
  Or, as a plain throw, wind up and throw from standing."""
  c = neutral_controls(n, p["performer"])
  hand = 0 if p["side"] == "left" else 1
  sign = 1.0 if hand == 0 else -1.0
  t = p["times"]            # key frames: bent, grabbed, up, wind-up, release, done
  if p["variant"] != "throw":
    down = _keys(n, [(t[0], 1.0), (t[1], 1.0), (t[2], 0.0)])
    c["height"] -= p["depth"] * down
    c["shift"][:, 1] -= 0.12 * down
    c["pitch"] += p["bend"] * down
    c["pelvis_pitch"] += 0.45 * down
    c["head_pitch"] -= 0.2 * down
    c["reach_w"][:, hand] = _keys(n, [(t[0], 1.0), (t[1], 1.0), (t[2], 0.0)])
    c["reach"][:, hand] = np.array([sign * 0.14, p["reach_y"], p["ahead"]], np.float32)
    c["elbow_pole"][:, hand] = np.array([sign * 0.3, 0.0, -1.0], np.float32)
    # Holding the object in front of the chest once up.
    hold = _keys(n, [(t[1], 0.0), (t[2], 1.0)] + ([(t[3], 0.0)] if p["variant"] == "pick_throw"
                                                  else [(n - 1, 1.0)]))
    c["flex"][:, hand] += 0.9 * hold
    c["elbow"][:, hand] += 1.2 * hold
  if p["variant"] != "pick":
    wind = _keys(n, [(t[3], 1.0), (t[4], 0.0)])
    throw = _keys(n, [(t[3], 0.0), (t[4], 1.0), (t[5], 0.0)])
    c["flex"][:, hand] += -0.6 * wind + 2.0 * throw
    c["abduct"][:, hand] += 1.2 * wind + 0.3 * throw
    c["elbow"][:, hand] += 1.5 * wind - 0.2 * throw
    c["twist"] += sign * (0.5 * wind - 0.5 * throw)
    c["pitch"] += -0.1 * wind + 0.3 * throw
  s = p["side"]
  if p["variant"] == "pick":
    caps = ["a person bends down and picks something up off the floor",
            "someone reaches down to the ground and picks up an object",
            f"the person crouches to pick something up with the {s} hand"]
  elif p["variant"] == "pick_throw":
    caps = ["a person picks something up from the ground and throws it",
            f"someone bends down, grabs an object and throws it with the {s} hand",
            "the person picks up a ball and tosses it forward"]
  else:
    caps = [f"a person throws a ball with the {s} hand", f"someone winds up and throws "
            f"something forward with the {s} arm", "the person throws an object overhand"]
  return c, caps


def _stumble(rng, p, n):
  """Walking, a trip: a lurch forward, quick short steps and flailing arms, then recovery."""
  c = neutral_controls(n, p["performer"])
  env = _moving_envelope(n, 12)
  trip, width = p["trip"], p["width"]
  bump = _pulses(n, [trip], width)
  lurch = _pulses(n, [trip], width // 2)
  speed = p["speed"] * (1.0 + 0.6 * lurch - 0.4 * bump * (np.arange(n) > trip + width // 2))
  c["vel"][:, 1] = speed / _FPS * env
  cadence = (0.75 + 0.3 * p["speed"]) * _cadence(p) * (1.0 + 0.9 * bump)
  _gait(c, cadence, 0.6, 0.07, rng)
  _arm_swing(c, float(np.mean(cadence)), 0.3)
  c["pitch"] += 0.45 * lurch
  c["head_pitch"] += 0.2 * lurch
  c["abduct"] += (0.9 * bump)[:, None]
  c["flex"] += (0.8 * lurch)[:, None]
  c["height"] += -0.02 * env - 0.06 * bump
  caps = ["a person walks forward, trips and catches their balance",
          "someone stumbles while walking and recovers",
          "the person trips over something and keeps walking"]
  return c, caps


def _dance(rng, p, n):
  c = neutral_controls(n, p["performer"])
  env = _envelope(n, 10)
  t = np.arange(n, dtype=np.float32)
  beat = 2 * np.pi * p["freq"] * t / _FPS
  style = p["style"]
  # Side to side: the pelvis sways over planted feet, stepping with the beat.
  c["shift"][:, 0] += p["sway"] * np.sin(beat) * env
  c["pelvis_roll"] += 0.08 * np.sin(beat) * env
  c["roll"] -= 0.12 * np.sin(beat) * env
  c["bounce"] += (-0.03 * (0.5 - 0.5 * np.cos(2 * beat)) * env).astype(np.float32)
  _gait(c, p["freq"], 0.7, 0.06, rng)
  if style == "arms":
    c["flex"] += ((2.6 + 0.3 * np.sin(beat)) * env)[:, None]
    c["elbow"] += (0.4 * env)[:, None]
    c["twist"] += 0.25 * np.sin(beat) * env
  else:
    c["abduct"] += ((1.0 + 0.6 * np.sin(beat))[:, None] * env[:, None]).astype(np.float32)
    c["elbow"] += ((1.0 + 0.4 * np.cos(beat)) * env)[:, None]
    c["flex"][:, 0] += 0.6 * np.sin(beat) * env
    c["flex"][:, 1] -= 0.6 * np.sin(beat) * env
  if style == "spin":
    sign = 1.0 if p["side"] == "left" else -1.0
    spin = _pulses(n, [p["spin_start"]], p["spin_frames"])
    c["yaw_rate"] += (sign * 2 * np.pi * spin / spin.sum()).astype(np.float32)
    caps = ["a person dances and spins around", "someone does a little dance with a spin",
            f"the person dances, turning a full circle to the {p['side']}"]
  elif style == "arms":
    caps = ["a person dances with both arms up in the air",
            "someone waves their arms above the head while dancing",
            "the person dances in place with raised arms"]
  else:
    caps = ["a person dances from side to side", "someone sways to the music and dances",
            "the person does a happy dance, moving the arms"]
  return c, caps


_REST = skeleton.rest_pose()
_CHEST_Y = kin.STAND_HEIGHT + float(_REST[9, 1])       # spine3, standing
_HEAD_Y = kin.STAND_HEIGHT + float(_REST[15, 1])


def _gesture(rng, p, n):
  """Upper-body gestures while standing: clapping, stretching, hands on the hips, a hand
  to the head, looking around."""
  c = neutral_controls(n, p["performer"])
  env = _envelope(n, p["ramp"])
  kind = p["kind"]
  if kind == "clap":
    t = np.arange(n, dtype=np.float32)
    apart = 0.5 + 0.5 * np.cos(2 * np.pi * p["freq"] * t / _FPS)
    for hand, sign in ((0, 1.0), (1, -1.0)):
      c["reach_w"][:, hand] = env
      c["reach"][:, hand, 0] = sign * (0.03 + 0.15 * apart)
      c["reach"][:, hand, 1] = _CHEST_Y - 0.05
      c["reach"][:, hand, 2] = 0.32
      c["elbow_pole"][:, hand] = np.array([sign, -0.5, -0.3], np.float32)
    caps = ["a person claps their hands", "someone claps in front of the chest",
            "the person applauds, clapping several times"]
  elif kind == "stretch":
    side = 1.0 if p["side"] == "left" else -1.0
    c["flex"] += (2.9 * env)[:, None]
    c["elbow"] -= (0.15 * env)[:, None]
    bend = _keys(n, [(n // 3, 0.0), (n // 2, 1.0), (2 * n // 3, -0.6), (n - 1, 0.0)])
    c["roll"] += side * 0.35 * bend * env
    c["pitch"] -= 0.15 * env
    caps = ["a person stretches both arms up over the head",
            f"someone reaches up high and leans to the {p['side']}",
            "the person stretches the upper body with raised arms"]
  elif kind == "hips":
    for hand, sign in ((0, 1.0), (1, -1.0)):
      c["reach_w"][:, hand] = env
      c["reach"][:, hand] = np.array([sign * 0.17, kin.STAND_HEIGHT + 0.02, 0.02], np.float32)
      c["elbow_pole"][:, hand] = np.array([sign, 0.0, -0.6], np.float32)
    c["twist"] += 0.3 * np.sin(np.linspace(0, 2 * np.pi, n)).astype(np.float32) * env
    caps = ["a person stands with the hands on the hips", "someone puts both hands on "
            "their hips and looks around", "the person rests the hands on the waist"]
  elif kind == "head":
    hand = 0 if p["side"] == "left" else 1
    sign = 1.0 if hand == 0 else -1.0
    c["reach_w"][:, hand] = env
    c["reach"][:, hand] = np.array([sign * 0.1, _HEAD_Y + 0.05, 0.02], np.float32)
    c["elbow_pole"][:, hand] = np.array([sign, 0.3, 0.2], np.float32)
    c["head_pitch"] += 0.2 * env
    caps = [f"a person scratches the head with the {p['side']} hand",
            f"someone puts their {p['side']} hand on the head",
            "the person touches the top of the head"]
  else:   # look around: the torso and head turn to one side and the other
    look = _keys(n, [(n // 4, 1.0), (n // 2, 0.0), (3 * n // 4, -1.0), (n - 1, 0.0)])
    c["twist"] += p["amount"] * look
    c["head_pitch"] += 0.15 * env
    caps = ["a person looks around to the left and to the right",
            "someone turns the upper body to look behind on both sides",
            "the person twists the torso one way and then the other"]
  return c, caps


def _march(rng, p, n):
  c = neutral_controls(n, p["performer"])
  cadence = p["freq"] * _cadence(p)
  _gait(c, cadence, 0.55, p["lift"], rng)
  _arm_swing(c, cadence, 0.6)
  high = p["lift"] > 0.22
  caps = ["a person marches in place" + (" lifting the knees high" if high else ""),
          "someone steps up and down on the spot", "the person stomps the feet in place"
          if not high else "the person raises the knees high, one after the other"]
  return c, caps


def sample_action(rng: np.random.Generator, family: str, performer: dict | None = None
                  ) -> Action:
  """Random parameters and duration (frames) of one action of `family` by `performer`."""
  performer = DEFAULT_PERFORMER if performer is None else performer
  if family in procedural_floor.FAMILIES:
    p = procedural_floor.sample_params(rng, family, performer)
    return Action(family, p, int(p["frames"]), first_only=True,
                  ends_standing=not p["end_on_floor"])
  side = SIDES[rng.integers(2)]
  pace = performer["leg_scale"] ** -0.5     # retargeted speed factor (sample_performer)
  if family == "walk":
    shape = ["straight", "straight", "left", "right", "circle"][rng.integers(5)]
    circle = shape == "circle"
    curve_dir = None if shape == "straight" else (side if circle else shape)
    curve = 0.0 if curve_dir is None else rng.uniform(1.0, 1.6) if circle else rng.uniform(0.3, 0.9)
    curve *= -1.0 if curve_dir == "right" else 1.0
    p = dict(speed=rng.uniform(0.8, 1.5) * pace, curve=curve, curve_dir=curve_dir, circle=circle)
    n = rng.integers(90, 161) if circle else rng.integers(60, 121)
  elif family == "run":
    curve_dir = [None, "left", "right"][rng.integers(3)]
    curve = 0.0 if curve_dir is None else rng.uniform(0.5, 1.2) * (-1 if curve_dir == "right"
                                                                   else 1)
    p = dict(speed=rng.uniform(2.3, 3.3) * pace, curve=curve, curve_dir=curve_dir)
    n = rng.integers(50, 101)
  elif family == "walk_backwards":
    p = dict(speed=rng.uniform(0.5, 0.9) * pace)
    n = rng.integers(60, 111)
    p["steps"] = max(2, int(round(n / _FPS * 2.0 * 0.8)))
  elif family == "side_step":
    p = dict(side=side, speed=rng.uniform(0.3, 0.6) * pace)
    n = rng.integers(50, 91)
  elif family == "turn":
    p = dict(side=side, angle=int(rng.choice([90, 180, 270, 360, 360, 720])))
    n = rng.integers(30, 51) + int(p["angle"] / 360 * rng.integers(25, 40))
  elif family in ("jump", "jump_forward"):
    count = int(rng.integers(1, 4))
    turn = int(rng.choice([90, 180])) if family == "jump" and rng.uniform() < 0.4 else 0
    p = dict(count=count, height=rng.uniform(0.15, 0.3), distance=rng.uniform(0.4, 0.8),
             turn=turn, side=side)
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
  elif family == "crouch":
    style = ["arms", "knees", "touch"][rng.integers(3)]
    touch = style == "touch"
    p = dict(depth=rng.uniform(0.45, 0.52) if touch else rng.uniform(0.35, 0.5),
             back=rng.uniform(0.08, 0.14),
             lean=rng.uniform(0.95, 1.1) if touch else rng.uniform(0.5, 0.8),
             pelvis=0.45 if touch else 0.25, style=style, arms=rng.uniform(0.9, 1.4), side=side,
             ahead=rng.uniform(0.3, 0.4), down=int(rng.integers(15, 23)),
             up=int(rng.integers(15, 23)))
    p["reach_y"] = _reachable_height(performer, p["depth"], p["back"], p["lean"], p["pelvis"],
                                     (0.14, p["ahead"]), 0.0) if touch else 0.0
    n = p["down"] + p["up"] + int(rng.integers(10, 40))
  elif family == "pick_up":
    variant = ["pick", "pick_throw", "pick_throw", "throw"][rng.integers(4)]
    gaps = [int(rng.integers(a, b)) for a, b in ((16, 22), (5, 9), (15, 21), (10, 15), (5, 8),
                                                 (8, 12))]
    if variant == "throw":
      gaps[:3] = [2, 2, 2]
    elif variant == "pick":
      gaps[3:] = [10, 1, 1]
    times = list(np.cumsum(gaps) + 4)
    p = dict(variant=variant, side=side, times=times, depth=rng.uniform(0.45, 0.52),
             bend=rng.uniform(1.0, 1.15), ahead=rng.uniform(0.32, 0.4))
    p["reach_y"] = _reachable_height(performer, p["depth"], 0.12, p["bend"], 0.45,
                                     (0.14, p["ahead"]), rng.uniform(0.04, 0.1))
    n = times[-1] + int(rng.integers(8, 16))
  elif family == "stumble":
    n = int(rng.integers(80, 131))
    p = dict(speed=rng.uniform(0.9, 1.4) * pace, trip=int(rng.uniform(0.3, 0.45) * n),
             width=int(rng.integers(18, 26)))
  elif family == "dance":
    style = ["sway", "spin", "spin", "arms"][rng.integers(4)]
    n = int(rng.integers(70, 141))
    p = dict(style=style, freq=rng.uniform(0.8, 1.3), sway=rng.uniform(0.04, 0.08), side=side,
             spin_frames=int(rng.integers(22, 32)))
    p["spin_start"] = int(rng.integers(12, max(13, n - p["spin_frames"] - 12)))
  elif family == "gesture":
    p = dict(kind=["clap", "stretch", "hips", "head", "look"][rng.integers(5)], side=side,
             freq=rng.uniform(1.5, 2.5), amount=rng.uniform(0.6, 1.0))
    n = int(rng.integers(50, 91))
    p["ramp"] = int(rng.integers(8, 14))
  elif family == "march":
    p = dict(freq=rng.uniform(0.8, 1.2), lift=rng.uniform(0.12, 0.35))
    n = rng.integers(50, 101)
  else:
    raise ValueError(f"unknown action family {family!r}")
  p["performer"] = performer
  return Action(family, p, int(n))


def _floor(family: str):
  def build(rng, p, n):
    del rng, n
    c = procedural_floor.build(p, neutral_controls(p["frames"], p["performer"]))
    return c, procedural_floor.captions(family, p)
  return build


BUILDERS: dict[str, Callable] = {
    "walk": _walk, "run": _run, "walk_backwards": _backwards, "side_step": _side_step,
    "turn": _turn, "jump": lambda r, p, n: _jump(r, p, n, False),
    "jump_forward": lambda r, p, n: _jump(r, p, n, True), "hop": _hop, "squat": _squat,
    "wave": _wave, "raise_arms": _raise_arms, "kick": _kick, "punch": _punch, "bow": _bow,
    "crouch": _crouch, "pick_up": _pick_up, "stumble": _stumble, "dance": _dance,
    "march": _march, "gesture": _gesture, "kneel": _floor("kneel"), "crawl": _floor("crawl"),
    "lie_down": _floor("lie_down"),
}
FAMILIES = tuple(BUILDERS)
# How often each family opens a motion (relative). Real motion is much more than walking
# and waving: the floor and whole-body families carry the spread of pelvis height, pose and
# turning that HumanML3D has.
FAMILY_WEIGHTS: dict[str, float] = dict(
    {f: 1.0 for f in FAMILIES}, walk=1.5, turn=2.5, dance=1.5, kneel=1.2, crawl=1.2,
    lie_down=1.2, walk_backwards=0.8, side_step=0.8, hop=0.8, march=0.8, jump_forward=0.8)
