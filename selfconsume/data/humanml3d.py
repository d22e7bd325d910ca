"""Loader for a HumanML3D-layout directory (the real dataset or the procedural corpus).

Layout: new_joint_vecs/ID.npy (T, 263) raw features; texts/ID.txt with lines
"caption#word/POS ...#start#end"; train.txt / val.txt / test.txt (one ID per line);
Mean.npy, Std.npy (263,). Mirrored clips ("M" + ID) are ordinary IDs.

Like HumanML3D's Text2MotionDatasetV2, a caption whose start/end are not both 0 describes the
sub-clip frames [start*20, end*20) and becomes its own entry (ID "ID@start-end"); a motion
is kept whole only if at least one caption covers all of it. Entries shorter than
`min_frames` are dropped; longer than `max_frames` are cut to their first `max_frames` frames
(HumanML3D's loaders crop to 196 frames too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from typing import Iterable, Sequence

import numpy as np

from selfconsume.data import subsets
from selfconsume.errors import DataError
from selfconsume.motion import skeleton
from selfconsume.motion.features import FEATURE_DIM
from selfconsume.motion.frames import frame_mask

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class MotionDataset:
  """Fixed-shape motions ready for the device.

  Attributes:
    ids: entry names, (N,).
    motions: (N, max_frames, 263) float32, normalised with mean/std; frames >= length are 0.
    lengths: (N,) int32 number of valid frames.
    captions: all captions of each entry.
    mean, std: (263,) float32 normalisation statistics (Mean.npy / Std.npy of the root).
    root: the directory read; split: 'train' | 'val' | 'test'.
  """
  ids: list[str]
  motions: np.ndarray
  lengths: np.ndarray
  captions: list[list[str]]
  mean: np.ndarray
  std: np.ndarray
  root: str
  split: str

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def max_frames(self) -> int:
    return self.motions.shape[1]

  @property
  def mask(self) -> np.ndarray:
    """(N, max_frames) bool, True on valid frames."""
    return np.asarray(frame_mask(self.lengths, self.max_frames))

  def normalize(self, x):
    """(..., 263) raw features -> normalised."""
    return (x - self.mean) / self.std

  def denormalize(self, x):
    """(..., 263) normalised features -> raw."""
    return x * self.std + self.mean

  def raw_motions(self) -> np.ndarray:
    """(N, max_frames, 263) denormalised features, padded frames 0."""
    return np.where(self.mask[..., None], self.denormalize(self.motions), 0.0).astype(np.float32)

  def fingerprint(self) -> str:
    """Hex digest of the contents (ids, motions, lengths, captions, statistics)."""
    h = hashlib.sha256()
    h.update("\n".join(self.ids).encode())
    h.update(np.ascontiguousarray(self.lengths, np.int32).tobytes())
    h.update(np.ascontiguousarray(self.motions, np.float32).tobytes())
    h.update("\n".join("\t".join(c) for c in self.captions).encode())
    h.update(np.ascontiguousarray(self.mean, np.float32).tobytes())
    h.update(np.ascontiguousarray(self.std, np.float32).tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class CaptionLine:
  caption: str
  tokens: tuple[str, ...]
  start: float   # seconds; start == end == 0 means the whole motion
  end: float


def _parse_time(value: str, path: str, lineno: int) -> float:
  try:
    t = float(value)
  except ValueError:
    raise DataError(f"{path}:{lineno}: start/end time {value!r} is not a number") from None
  return 0.0 if math.isnan(t) else t


def _text_lines(f, path: str) -> list[str]:
  """The lines of a text file opened as UTF-8; DataError naming the file if it is not."""
  try:
    return f.readlines()
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def read_captions(path: str) -> list[CaptionLine]:
  """Parses a HumanML3D texts/ID.txt file; raises DataError if missing or without captions."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: caption file is missing (expected texts/<id>.txt)")
  lines = []
  with open(path, encoding="utf-8") as f:
    for lineno, raw in enumerate(_text_lines(f, path), 1):
      raw = raw.strip()
      if not raw:
        continue
      fields = raw.split("#")
      caption = fields[0].strip()
      if not caption:
        raise DataError(f"{path}:{lineno}: empty caption (expected 'caption#tokens#start#end')")
      tokens = tuple(fields[1].split()) if len(fields) > 1 else ()
      start = _parse_time(fields[2], path, lineno) if len(fields) > 2 else 0.0
      end = _parse_time(fields[3], path, lineno) if len(fields) > 3 else 0.0
      lines.append(CaptionLine(caption, tokens, start, end))
  if not lines:
    raise DataError(f"{path}: caption file is empty (expected lines 'caption#tokens#start#end')")
  return lines


def read_split(root: str, split: str) -> list[str]:
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
  path = os.path.join(root, split + ".txt")
  if not os.path.isfile(path):
    raise DataError(f"{path}: split file is missing")
  with open(path, encoding="utf-8") as f:
    ids = [line.strip() for line in _text_lines(f, path) if line.strip()]
  if not ids:
    raise DataError(f"{path}: split file lists no motion ids")
  return ids


def read_motion(path: str) -> np.ndarray:
  """Loads and validates one new_joint_vecs/ID.npy -> (T, 263) float32."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: motion file is missing (the id is listed in a split file)")
  try:
    motion = np.load(path)
  except (ValueError, OSError) as e:
    raise DataError(f"{path}: not a readable .npy array ({e})") from None
  if motion.ndim != 2 or motion.shape[1] != FEATURE_DIM:
    raise DataError(f"{path}: expected features of shape (frames, {FEATURE_DIM}), "
                    f"got {motion.shape}")
  if not np.isfinite(motion).all():
    raise DataError(f"{path}: contains NaN or inf")
  return motion.astype(np.float32)


def read_statistics(root: str) -> tuple[np.ndarray, np.ndarray]:
  out = []
  for name in ("Mean.npy", "Std.npy"):
    path = os.path.join(root, name)
    if not os.path.isfile(path):
      raise DataError(f"{path}: normalisation statistics are missing")
    try:
      value = np.load(path)
    except (ValueError, OSError, EOFError) as e:
      raise DataError(f"{path}: not a readable .npy array ({e})") from None
    if value.shape != (FEATURE_DIM,):
      raise DataError(f"{path}: expected shape ({FEATURE_DIM},), got {value.shape}")
    if not np.isfinite(value).all():
      raise DataError(f"{path}: contains NaN or inf")
    out.append(value.astype(np.float32))
  if (out[1] <= 0).any():
    raise DataError(f"{os.path.join(root, 'Std.npy')}: every std must be > 0")
  return out[0], out[1]


def _entries(motion_id: str, motion: np.ndarray, captions: list[CaptionLine], min_frames: int,
             max_frames: int) -> Iterable[tuple[str, np.ndarray, list[str]]]:
  """The whole motion (if any caption covers it) and one entry per captioned sub-clip."""
  whole = [c.caption for c in captions if c.start == 0.0 and c.end == 0.0]
  if whole and len(motion) >= min_frames:
    yield motion_id, motion[:max_frames], whole
  segments: dict[tuple[float, float], list[str]] = {}
  for c in captions:
    if not (c.start == 0.0 and c.end == 0.0):
      segments.setdefault((c.start, c.end), []).append(c.caption)
  for (start, end), caps in segments.items():
    clip = motion[int(start * skeleton.FPS):int(end * skeleton.FPS)]
    if len(clip) >= min_frames:
      yield f"{motion_id}@{start:g}-{end:g}", clip[:max_frames], caps


def load(root: str, split: str, *, min_frames: int = skeleton.MIN_FRAMES,
         max_frames: int = skeleton.MAX_FRAMES, subset_ids: str | Sequence[str] | None = None,
         num_motions: int | None = None, seed: int = 0) -> MotionDataset:
  """Reads one split of a HumanML3D-layout directory.

  Args:
    root: the dataset directory.
    split: 'train', 'val' or 'test'.
    min_frames, max_frames: entries shorter are dropped, longer are cut.
    subset_ids: only these motion ids ('paper:64' etc., a file with one id per line, or a
      sequence); each must be listed in the split. Sub-clip entries of a listed motion are kept.
    num_motions: a random subset of this many entries (chosen with `seed`), e.g. the paper's
      64 / 128 / 256 / 2794 training motions.
    seed: seed of that subset.

  Returns:
    MotionDataset with motions (N, max_frames, 263) normalised and zero-padded.

  Raises:
    DataError: naming the file and what was expected, for a missing directory, split file,
      motion or caption file, wrong feature width, NaN/inf, empty split or bad statistics.
  """
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise DataError(f"{root}: dataset directory does not exist")
  if min_frames < 2 or max_frames < min_frames:
    raise DataError(f"need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
  split_ids = read_split(root, split)
  if subset_ids is not None:
    wanted = (subsets.read_subset_ids(subset_ids)
              if isinstance(subset_ids, (str, os.PathLike)) else list(subset_ids))
    known = set(split_ids)
    missing = [i for i in wanted if i not in known]
    if missing:
      raise DataError(f"{os.path.join(root, split + '.txt')}: subset ids not in this split: "
                      f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    split_ids = list(dict.fromkeys(wanted))
  mean, std = read_statistics(root)

  ids, clips, captions = [], [], []
  for motion_id in split_ids:
    motion = read_motion(os.path.join(root, "new_joint_vecs", motion_id + ".npy"))
    lines = read_captions(os.path.join(root, "texts", motion_id + ".txt"))
    for entry_id, clip, caps in _entries(motion_id, motion, lines, min_frames, max_frames):
      ids.append(entry_id)
      clips.append(clip)
      captions.append(caps)
  if not ids:
    raise DataError(f"{os.path.join(root, split + '.txt')}: no motion of {min_frames} to "
                    f"{max_frames} frames with captions in split {split!r}")
  if num_motions is not None:
    if num_motions <= 0 or num_motions > len(ids):
      raise DataError(f"{os.path.join(root, split + '.txt')}: asked for {num_motions} motions "
                      f"but split {split!r} has {len(ids)}")
    keep = np.sort(np.random.default_rng(seed).choice(len(ids), num_motions, replace=False))
    ids = [ids[i] for i in keep]
    clips = [clips[i] for i in keep]
    captions = [captions[i] for i in keep]

  motions = np.zeros((len(ids), max_frames, FEATURE_DIM), np.float32)
  lengths = np.zeros((len(ids),), np.int32)
  for k, clip in enumerate(clips):
    motions[k, :len(clip)] = (clip - mean) / std
    lengths[k] = len(clip)
  return MotionDataset(ids=ids, motions=motions, lengths=lengths, captions=captions, mean=mean,
                       std=std, root=root, split=split)
