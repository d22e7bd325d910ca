"""The built-in text-motion corpus: kinematic motions on the 22-joint skeleton, written in
exactly the HumanML3D directory layout.

Each motion is one action or a sequence of two, drawn from 23 families: walk (straight,
curving, in a circle), run (straight or curving), walk backwards, side-step, turn and spin,
jump in place (or with a turn in the air), jump forward, hop on one leg, squat, crouch, wave,
raise arms, kick, punch, bow, pick up (and throw), stumble and recover, dance, march in
place, gestures (clap, stretch, hands on the hips, hand to the head, look around), and the
floor families kneel (and sit back on the heels), crawl, lie down / get up
(procedural_floor.py), with weights `procedural_actions.FAMILY_WEIGHTS`. Each has parameters
(speed, curve, side, angle, count, amplitude, duration, ...) and is performed by a person
drawn per motion (`procedural_actions.sample_performer`: how their proportions show after
HumanML3D's retargeting to one skeleton). An action is a set of per-frame *controls*
(body-frame root velocity, yaw rate, pelvis height, tilt and sway, airborne lift, torso
lean/bend/twist, arm angles, foot contacts, foot and hand targets); the actions of a
sequence are concatenated and the controls turned into joints by

  * integrating the root trajectory and heading,
  * planting each foot for the whole of each contact interval (at its nominal place under
    the hip at mid-stance) and swinging it on a smooth arc between plants,
  * lowering the pelvis where a planted leg could not reach its foot,
  * two-bone inverse kinematics for legs and arms and forward kinematics for pelvis, spine
    and head (procedural_kinematics.py; the families are in procedural_actions.py),

so bone lengths are constant by construction, planted feet (and the knees and hands the
floor families rest on) do not slide, nothing goes below the ground, the body rests only on
joints the physics humanoid can stand on, and it is airborne only in ballistic flight
phases. Captions (three paraphrases per motion) are composed from the action parameters.

Features and Mean/Std are computed as HumanML3D's process_file and cal_mean_variance do.
The corpus is built in a temporary directory next to its destination and renamed into
place, so an interrupted build leaves nothing that looks like a corpus.

Run: python -m selfconsume.data.procedural --out DIR --size 600 --seed 0
(prints the per-block std of the corpus next to real HumanML3D's).
"""

from __future__ import annotations

import argparse
from concurrent import futures
import json
import os
import shutil
import tempfile
import time
from typing import Sequence

import numpy as np
from scipy import ndimage

from selfconsume import outputs
from selfconsume.data import procedural_actions as actions_lib
from selfconsume.data import procedural_floor as floor_lib
from selfconsume.data.procedural_actions import FAMILIES
from selfconsume.data.procedural_kinematics import controls_to_joints
from selfconsume.errors import DataError
from selfconsume.motion import features as features_lib
from selfconsume.motion import skeleton

CORPUS_VERSION = 4   # bump whenever the motions or captions drawn for a seed change
MANIFEST = "manifest.json"
KIND = "selfconsume.procedural"
SPLIT_FRACTIONS = (("train", 0.80), ("val", 0.05), ("test", 0.15))
MAX_JOINT_FRAMES = skeleton.MAX_FRAMES + 1   # T joint frames give T - 1 feature rows
MIN_JOINT_FRAMES = skeleton.MIN_FRAMES + 1
SECOND_ACTION_PROBABILITY = 0.4
# The feature groups HumanML3D's cal_mean_variance gives one std each.
FEATURE_GROUPS = (
    ("root angular velocity", features_lib.ROOT_ROT_VEL),
    ("root linear velocity", features_lib.ROOT_LIN_VEL),
    ("root height", features_lib.ROOT_Y),
    ("joint positions", features_lib.RIC),
    ("6-D rotations", features_lib.ROT6D),
    ("joint velocities", features_lib.LOCAL_VEL),
    ("foot contacts", features_lib.FOOT_CONTACT),
)
# Those stds in real HumanML3D (its official Std.npy), the spread the corpus aims for.
HUMANML3D_GROUP_STD = {
    "root angular velocity": 0.0128, "root linear velocity": 0.0169, "root height": 0.154,
    "joint positions": 0.122, "6-D rotations": 0.300, "joint velocities": 0.0195,
    "foot contacts": 0.356,
}
# Channels smoothed across the junction of two actions (not on `exact` frames).
_SMOOTHED = ("vel", "yaw_rate", "shift", "height", "pitch", "roll", "twist", "head_pitch",
             "pelvis_pitch", "pelvis_roll", "abduct", "flex", "elbow")


def _smooth(x: np.ndarray, sigma: float = 1.5) -> np.ndarray:
  """Gaussian smoothing along the frame axis, edges repeated (keeps boundaries smooth)."""
  return ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=3.0)


def _merge(parts: list[dict]) -> dict:
  merged = {k: np.concatenate([p[k] for p in parts], 0) for k in parts[0]}
  exact = merged["exact"]
  for k in _SMOOTHED:
    keep = exact.reshape(exact.shape + (1,) * (merged[k].ndim - 1))
    merged[k] = np.where(keep, merged[k], _smooth(merged[k])).astype(np.float32)
  return merged


_VERBS = {
    "walks", "runs", "jumps", "turns", "waves", "kicks", "punches", "bows", "squats", "hops",
    "raises", "lifts", "takes", "moves", "steps", "spins", "leaps", "does", "throws", "boxes",
    "bends", "crouches", "puts", "rotates", "balances", "shuffles", "jogs", "sprints", "makes",
    "lowers", "is", "walking", "running", "side", "kneels", "sits", "stands", "gets", "crawls",
    "lies", "rises", "pushes", "drops", "starts", "crawling", "picks", "grabs", "tosses",
    "reaches", "winds", "stumbles", "trips", "catches", "keeps", "recovers", "dances",
    "dancing", "sways", "marches", "stomps", "claps", "applauds", "stretches", "leans",
    "rests", "scratches", "touches", "looks", "twists", "circles", "pivots", "waits", "holds",
    "stand", "stands", "standing", "lifting", "turning", "moving", "bending", "curving",
    "raised", "squat", "waves", "regains"}
_NOUNS = {
    "person", "someone", "man", "woman", "figure", "arm", "arms", "hand", "hands", "leg",
    "foot", "feet", "head", "fist", "knees", "knee", "waist", "steps", "squat", "squats", "jump",
    "jumps", "bow", "arc", "line", "kick", "punch", "punches", "spot", "air", "walk", "shoulder",
    "direction", "place", "degrees", "pace", "times", "floor", "ground", "heels", "stomach",
    "belly", "fours", "object", "ball", "something", "balance", "dance", "music", "circle",
    "turn", "turns", "hips", "chest", "body", "torso", "way", "quarter", "spin", "moment",
    "quarters", "side", "toes"}
_ADJ = {"left", "right", "slow", "fast", "steady", "deep", "long", "single", "high", "low",
        "full", "little", "happy", "opposite", "upper", "both", "face", "forward"}


def _tag(word: str) -> str:
  if word in ("a", "the"):
    return f"{word}/DET"
  if word in _VERBS:
    return f"{word}/VERB"
  if word in _NOUNS:
    return f"{word}/NOUN"
  if word in _ADJ:
    return f"{word}/ADJ"
  return f"{word}/OTHER"


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
  if predicate == caption:
    return caption
  return f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {predicate}"


def _draw_family(rng: np.random.Generator, opening: bool) -> str:
  """A family by FAMILY_WEIGHTS; floor families (planned in the start frame) only open."""
  names = [f for f in FAMILIES if opening or f not in floor_lib.FAMILIES]
  weights = np.array([actions_lib.FAMILY_WEIGHTS[f] for f in names], np.float64)
  return names[rng.choice(len(names), p=weights / weights.sum())]


def sample_motion(rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[str]]:
  """One motion: global joints (T, 22, 3) with 41 <= T <= 197, captions, family names."""
  performer = actions_lib.sample_performer(rng)
  while True:
    first = actions_lib.sample_action(rng, _draw_family(rng, True), performer)
    if first.num_frames > MAX_JOINT_FRAMES:
      continue
    actions = [first]
    if first.ends_standing and rng.uniform() < SECOND_ACTION_PROBABILITY:
      second = actions_lib.sample_action(rng, _draw_family(rng, False), performer)
      if first.num_frames + second.num_frames <= MAX_JOINT_FRAMES:
        actions.append(second)
    if sum(a.num_frames for a in actions) >= MIN_JOINT_FRAMES:
      break
  parts, caps = [], []
  for a in actions:
    ctrl, c = actions_lib.BUILDERS[a.family](rng, a.params, a.num_frames)
    parts.append(ctrl)
    caps.append(c)
  controls = _merge(parts)
  joints = controls_to_joints(controls, rng.uniform(-2, 2, 2).astype(np.float32),
                              float(rng.uniform(-np.pi, np.pi)), stance=performer["stance"])
  if len(caps) == 1:
    captions = [_with_subject(c, rng) for c in caps[0]]
  else:
    order = rng.permutation(3)
    a, b = caps[0], caps[1]
    captions = [f"{_with_subject(a[order[0]], rng)} and then {_predicate(b[order[1]])}",
                f"{_with_subject(a[order[1]], rng)}, after that {_predicate(b[order[2]])}",
                f"someone first {_predicate(a[order[2]])}, then {_predicate(b[order[0]])}"]
  return joints.astype(np.float32), captions, [a.family for a in actions]


# ----------------------------------------------------------------------------- checks
# Joints the physics humanoid has contact spheres at (selfconsume.physics.humanoid): the
# only ones a pose may rest on.
SUPPORT_JOINTS = (0, 4, 5, 7, 8, 10, 11, 15, 20, 21)
_SUPPORT_GROUPS = {"feet": (7, 8, 10, 11), "knees": (4, 5), "hands": (20, 21), "pelvis": (0,)}
GROUND_TOLERANCE = 0.01     # m: a joint this close to the floor is on it
SLIDE_TOLERANCE = 0.0025    # m per frame: a grounded joint moving less than this is planted


def plausibility(joints: np.ndarray) -> dict:
  """Physical checks of one motion (T, 22, 3) on the floor y = 0 (world, not canonical).

  Returns:
    lowest: the lowest joint height (m) over the motion (nothing may be below the floor);
    bone_spread: the largest change of any bone's length (m);
    lowest_unsupported: the lowest height of any joint the humanoid cannot rest on (hips,
      spine, neck, collars, shoulders, elbows), which must stay off the floor;
    grounded / planted: per support group (feet, knees, hands, pelvis), the number of
      joint-frames on the floor at two consecutive frames, and how many of those moved less
      than SLIDE_TOLERANCE horizontally (did not slide).
  """
  joints = np.asarray(joints, np.float64)
  bones = np.linalg.norm(joints[:, 1:] - joints[:, list(skeleton.PARENTS[1:])], axis=-1)
  others = [j for j in range(skeleton.NUM_JOINTS) if j not in SUPPORT_JOINTS]
  out = {"lowest": float(joints[..., 1].min()), "bone_spread": float(np.ptp(bones, 0).max()),
         "lowest_unsupported": float(joints[:, others, 1].min()), "grounded": {},
         "planted": {}}
  for name, ids in _SUPPORT_GROUPS.items():
    part = joints[:, list(ids)]
    down = (part[1:, :, 1] < GROUND_TOLERANCE) & (part[:-1, :, 1] < GROUND_TOLERANCE)
    slide = np.linalg.norm(part[1:, :, [0, 2]] - part[:-1, :, [0, 2]], axis=-1)
    out["grounded"][name] = int(down.sum())
    out["planted"][name] = int((slide[down] < SLIDE_TOLERANCE).sum())
  return out


# ----------------------------------------------------------------------------- corpus
def motion_features(joint_list: Sequence[np.ndarray]) -> list[np.ndarray]:
  """HumanML3D features (T_i - 1, 263) of each (T_i, 22, 3) motion (T_i <= 197)."""
  return features_lib.joints_to_features_list(joint_list)


def normalization_stats(motions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """HumanML3D's cal_mean_variance: the per-dimension mean over all frames of `motions`
  (T_i, 263), and the per-dimension std with each feature group's values replaced by their
  mean over the group. Nothing is divided by 5: the foot contacts' /5 belongs to the
  text-to-motion evaluator's and MDM's loaders, not to the dataset's Std.npy. One departure,
  only for degenerate data: a group with no spread gets std 1 (cal_mean_variance would write
  0 and every loader would divide by it).
  """
  data = np.concatenate(motions, 0).astype(np.float64)
  mean = data.mean(0)
  std = data.std(0)
  for _, group in FEATURE_GROUPS:
    value = std[group].mean()
    std[group] = value if value > 1e-8 else 1.0
  return mean.astype(np.float32), std.astype(np.float32)


def group_std(std: np.ndarray) -> dict[str, float]:
  """{group name: its std} of a Std.npy (263,) (each group holds one value)."""
  return {name: float(np.mean(std[group])) for name, group in FEATURE_GROUPS}


def std_table(std: np.ndarray) -> str:
  """The per-block std of `std` next to real HumanML3D's, one row per block."""
  rows = [f"{'block':<24}{'corpus':>10}{'HumanML3D':>11}{'ratio':>8}"]
  for name, value in group_std(std).items():
    real = HUMANML3D_GROUP_STD[name]
    rows.append(f"{name:<24}{value:>10.4f}{real:>11.4f}{value / real:>8.2f}")
  return "\n".join(rows)


def _compile_feature_functions() -> None:
  still = np.zeros((MIN_JOINT_FRAMES, skeleton.NUM_JOINTS, 3), np.float32) + skeleton.rest_pose()
  features_lib.features_to_joints_list(features_lib.joints_to_features_list([still]))


def _write_files(out_dir: str, size: int, seed: int) -> dict:
  """Builds the corpus into the (empty or new) directory out_dir; returns its manifest."""
  if size < 20:
    raise ValueError(f"procedural corpus size must be >= 20 (one per split), got {size}")
  rng = np.random.default_rng(seed)
  joints, captions, families = [], [], []
  # XLA compiles the feature functions in a second thread (it releases the GIL) while numpy
  # draws the motions: on a busy 2-core machine that overlap is a large share of the time.
  with futures.ThreadPoolExecutor(max_workers=1) as pool:
    warm_up = pool.submit(_compile_feature_functions)
    for _ in range(size):
      j, c, fam = sample_motion(rng)
      joints.append(j)
      captions.append(c)
      families.append(fam)
    warm_up.result()
  feats = motion_features(joints)
  # new_joints are what the features give back, as HumanML3D's are (recover_from_ric).
  recovered = features_lib.features_to_joints_list(feats)
  ids = [f"{i:06d}" for i in range(size)]
  for sub in ("new_joint_vecs", "new_joints", "texts"):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  for i, motion_id in enumerate(ids):
    np.save(os.path.join(out_dir, "new_joint_vecs", motion_id + ".npy"), feats[i])
    np.save(os.path.join(out_dir, "new_joints", motion_id + ".npy"), recovered[i])
    with open(os.path.join(out_dir, "texts", motion_id + ".txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(caption_line(c) for c in captions[i]) + "\n")
  order = np.random.default_rng(seed + 1).permutation(size)
  splits, start = {}, 0
  for k, (name, fraction) in enumerate(SPLIT_FRACTIONS):
    stop = size if k == len(SPLIT_FRACTIONS) - 1 else start + max(1, int(round(fraction * size)))
    splits[name] = sorted(ids[i] for i in order[start:stop])
    start = stop
  for name, split_ids in splits.items():
    with open(os.path.join(out_dir, name + ".txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(split_ids) + "\n")
  # Like cal_mean_variance: over every motion in new_joint_vecs.
  mean, std = normalization_stats(feats)
  np.save(os.path.join(out_dir, "Mean.npy"), mean)
  np.save(os.path.join(out_dir, "Std.npy"), std)
  family_counts = {}
  for fam in families:
    key = "+".join(fam)
    family_counts[key] = family_counts.get(key, 0) + 1
  manifest = {
      "kind": KIND, "version": CORPUS_VERSION, "size": size, "seed": seed,
      "splits": {k: len(v) for k, v in splits.items()}, "families": list(FAMILIES),
      "group_std": {k: round(v, 6) for k, v in group_std(std).items()},
      "sequence_counts": family_counts,
      "motion_families": {m: list(fam) for m, fam in zip(ids, families)}}
  # Written last: a manifest means the corpus is complete.
  outputs.write_json(os.path.join(out_dir, MANIFEST), manifest)
  return manifest


def _read_manifest(root: str) -> dict | None:
  """root's procedural-corpus manifest, or None when root holds none (or another kind)."""
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    return None
  try:
    manifest = outputs.read_json(path)
  except (OSError, ValueError):
    return None
  if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
    return None
  return manifest


def _check_destination(root: str) -> None:
  """DataError unless root may be (re)built: missing, empty, or one of our corpora."""
  if not os.path.exists(root):
    return
  if not os.path.isdir(root):
    raise DataError(f"{root}: exists and is not a directory; the procedural corpus needs "
                    "an empty or new directory")
  if os.listdir(root) and _read_manifest(root) is None:
    raise DataError(f"{root}: not empty and not a procedural corpus (no {MANIFEST} of one); "
                    "refusing to build the corpus there (pass an empty or new directory)")


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale_builds(parent: str, prefix: str) -> None:
  """Removes the temporary directories of builds whose process has died (an interrupted
  build is simply built again); those of a build still running are left alone."""
  for name in os.listdir(parent):
    if not name.startswith(prefix):
      continue
    pid = name[len(prefix):].split("-")[0]
    if not pid.isdigit() or not _process_alive(int(pid)):
      shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def write_corpus(out_dir: str, size: int, seed: int, *, verbose: bool = False) -> dict:
  """Writes `size` motions in the HumanML3D layout to out_dir (deterministic by seed).

  The corpus is built in a temporary directory next to out_dir and renamed into place, so
  out_dir never holds a partial corpus: an interrupted build leaves only a stale
  '.tmp-corpus-*' sibling (removed by the next build) and is simply built again. out_dir
  must be missing, empty or a procedural corpus (which is replaced); anything else is
  refused with a DataError and left untouched. With `verbose`, prints the per-block std of
  the corpus next to real HumanML3D's. Returns the manifest.
  """
  out_dir = os.path.abspath(os.fspath(out_dir))
  _check_destination(out_dir)
  parent = os.path.dirname(out_dir)
  try:
    os.makedirs(parent, exist_ok=True)
  except OSError as e:
    raise DataError(f"{parent}: cannot create the corpus's parent directory "
                    f"({e.strerror})") from None
  prefix = f".tmp-corpus-{os.path.basename(out_dir)}-"
  _remove_stale_builds(parent, prefix)
  start = time.time()
  try:
    tmp = tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-")
  except OSError as e:
    raise DataError(f"{parent}: cannot write the corpus there ({e.strerror})") from None
  try:
    manifest = _write_files(tmp, size, seed)
    if os.path.isdir(out_dir):
      old = tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-")
      os.rename(out_dir, os.path.join(old, "old"))
      os.rename(tmp, out_dir)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, out_dir)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  if verbose:
    std = np.load(os.path.join(out_dir, "Std.npy"))
    print(f"procedural corpus: {size} motions, seed {seed}, built in "
          f"{time.time() - start:.1f} s -> {out_dir}")
    print(std_table(std))
  return manifest


def motion_families(root: str) -> dict[str, tuple[str, ...]] | None:
  """The action families of each motion id of a procedural corpus (a sequence has two),
  read from its manifest; None for any other directory."""
  manifest = _read_manifest(root)
  if manifest is None:
    return None
  return {m: tuple(f) for m, f in manifest.get("motion_families", {}).items()} or None


def ensure_corpus(root: str, size: int, seed: int) -> str:
  """Returns root after making sure it holds the corpus of this size and seed.

  Reuses it when root/manifest.json says so; builds it (or rebuilds a procedural corpus of
  another version, size or seed) otherwise, printing its per-block std; refuses (DataError,
  root untouched) a non-empty directory that is not a procedural corpus.
  """
  manifest = _read_manifest(root)
  if (manifest is not None and manifest.get("version") == CORPUS_VERSION
      and manifest.get("size") == size and manifest.get("seed") == seed):
    return root
  write_corpus(root, size, seed, verbose=True)
  return root


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--size", type=int, default=600)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  start = time.time()
  try:
    write_corpus(args.out, args.size, args.seed, verbose=True)
  except DataError as e:
    raise SystemExit(f"error: {e}") from None
  print(json.dumps({"out": args.out, "size": args.size, "seed": args.seed,
                    "seconds": round(time.time() - start, 2)}))


if __name__ == "__main__":
  main()
