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
  * two-bone inverse kinematics for the legs and forward kinematics for spine and arms
    (procedural_kinematics.py; the action families are in procedural_actions.py),

so bone lengths are constant by construction, planted feet do not slide, the flat foot's
sole never goes below the ground and the body is airborne only in flight phases. Captions
(about three paraphrases per motion) are composed from the action parameters.

Run: python -m selfconsume.data.procedural --out DIR --size 2000 --seed 0
"""

from __future__ import annotations

import argparse
from concurrent import futures
import json
import os
import shutil
import time
from typing import Sequence

import numpy as np
from scipy import ndimage

from selfconsume import outputs
from selfconsume.data import procedural_actions as actions_lib
from selfconsume.data.procedural_actions import FAMILIES
from selfconsume.data.procedural_kinematics import controls_to_joints
from selfconsume.errors import DataError
from selfconsume.motion import features as features_lib
from selfconsume.motion import skeleton

CORPUS_VERSION = 3   # bump whenever the motions or captions drawn for a seed change
MANIFEST = "manifest.json"
SPLIT_FRACTIONS = (("train", 0.80), ("val", 0.05), ("test", 0.15))
MAX_JOINT_FRAMES = skeleton.MAX_FRAMES + 1   # T joint frames give T - 1 feature rows
MIN_JOINT_FRAMES = skeleton.MIN_FRAMES + 1
# HumanML3D's cal_mean_variance divides the foot-contact std by this to weight them up.
FOOT_CONTACT_STD_BIAS = 5.0


def _smooth(x: np.ndarray, sigma: float = 1.5) -> np.ndarray:
  """Gaussian smoothing along the frame axis, edges repeated (keeps boundaries smooth)."""
  return ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=3.0)


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
  if predicate == caption:
    return caption
  return f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {predicate}"


def sample_motion(rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[str]]:
  """One motion: global joints (T, 22, 3) with 41 <= T <= 197, captions, family names."""
  while True:
    first = actions_lib.sample_action(rng, FAMILIES[rng.integers(len(FAMILIES))])
    actions = [first]
    if rng.uniform() < 0.4:
      second = actions_lib.sample_action(rng, FAMILIES[rng.integers(len(FAMILIES))])
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


def _compile_feature_functions() -> None:
  still = np.zeros((MIN_JOINT_FRAMES, skeleton.NUM_JOINTS, 3), np.float32) + skeleton.rest_pose()
  features_lib.features_to_joints_list(features_lib.joints_to_features_list([still]))


def write_corpus(out_dir: str, size: int, seed: int) -> None:
  """Writes `size` motions in the HumanML3D layout under out_dir (deterministic by seed)."""
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
  # Written last: a manifest means the corpus is complete.
  outputs.write_json(os.path.join(out_dir, MANIFEST), {
      "kind": "selfconsume.procedural", "version": CORPUS_VERSION, "size": size, "seed": seed,
      "splits": {k: len(v) for k, v in splits.items()}, "families": list(FAMILIES),
      "sequence_counts": family_counts,
      "motion_families": {m: list(fam) for m, fam in zip(ids, families)}})


def motion_families(root: str) -> dict[str, tuple[str, ...]] | None:
  """The action families of each motion id of a procedural corpus (a sequence has two),
  read from its manifest; None for any other directory."""
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    return None
  try:
    manifest = outputs.read_json(path)
  except (OSError, json.JSONDecodeError):
    return None
  if not isinstance(manifest, dict) or manifest.get("kind") != "selfconsume.procedural":
    return None
  return {m: tuple(f) for m, f in manifest.get("motion_families", {}).items()} or None


def ensure_corpus(root: str, size: int, seed: int) -> str:
  """Returns root after making sure it holds the corpus of this size and seed.

  Reuses it when root/manifest.json says so; rebuilds a procedural corpus of another size or
  seed in place; refuses (DataError) to write into a non-empty directory that is not one.
  """
  path = os.path.join(root, MANIFEST)
  manifest = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        manifest = json.load(f)
    except (OSError, json.JSONDecodeError):
      manifest = None
  if isinstance(manifest, dict) and manifest.get("kind") == "selfconsume.procedural":
    if (manifest.get("version") == CORPUS_VERSION and manifest.get("size") == size
        and manifest.get("seed") == seed):
      return root
    os.remove(path)   # an interrupted rebuild must not look complete
    for sub in ("new_joint_vecs", "new_joints", "texts"):
      shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
  elif os.path.isdir(root) and os.listdir(root):
    raise DataError(f"{root}: not empty and has no procedural-corpus {MANIFEST}; refusing to "
                    "write the corpus over it (pass an empty or new directory)")
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
