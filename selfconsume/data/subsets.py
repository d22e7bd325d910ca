"""The paper's n-subsets of HumanML3D's training split, shipped with the package, and the
reader of a subset given by name or by file.

`read_subset_ids('paper:64')` (128, 256, 2794) reads the id lists Gillman et al. train the
motion loop on (paper_subsets/README.md says where they come from and how the paper built
its BMLmovi set); any other spec is a path to a file with one HumanML3D motion id per line.
"""

from __future__ import annotations

import os

from selfconsume.errors import DataError

PAPER_SIZES = (64, 128, 256, 2794)
PAPER_PREFIX = "paper:"
_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_subsets")


def paper_subset_path(n: int) -> str:
  """The shipped id file of the paper's n-subset (n in PAPER_SIZES)."""
  if n not in PAPER_SIZES:
    raise DataError(f"no paper subset of {n} motions; expected one of {PAPER_SIZES}")
  return os.path.join(_DIR, f"{n:04d}_train.txt")


def _read_id_file(path: str, spec: str) -> list[str]:
  if not os.path.exists(path):
    raise DataError(f"subset_ids={spec!r}: {path} does not exist (expected a file of motion "
                    f"ids, one per line, or one of "
                    f"{', '.join(PAPER_PREFIX + str(n) for n in PAPER_SIZES)})")
  if not os.path.isfile(path):
    raise DataError(f"subset_ids={spec!r}: {path} is not a file (expected a file of motion "
                    "ids, one per line)")
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except UnicodeDecodeError as e:
    raise DataError(f"subset_ids={spec!r}: {path} is not UTF-8 text "
                    f"(byte {e.start}: {e.reason})") from None
  except OSError as e:
    raise DataError(f"subset_ids={spec!r}: cannot read {path} ({e.strerror})") from None
  ids = []
  for lineno, line in enumerate(lines, 1):
    motion_id = line.strip()
    if not motion_id:
      continue
    if len(motion_id.split()) != 1:
      raise DataError(f"{path}:{lineno}: expected one motion id per line, got {line.strip()!r}")
    ids.append(motion_id)
  if not ids:
    raise DataError(f"subset_ids={spec!r}: {path} lists no motion ids")
  return ids


def read_subset_ids(spec: str) -> list[str]:
  """The motion ids of a training subset, in file order.

  Args:
    spec: 'paper:64', 'paper:128', 'paper:256' or 'paper:2794' (the paper's subsets, shipped
      with the package), or the path of a file with one HumanML3D motion id per line (blank
      lines ignored).

  Returns:
    The ids (the paper's 64/128/256 lists hold one id more than their name: 65/129/257).

  Raises:
    DataError: one line naming the spec and what was expected, for an unknown paper subset,
      a missing or unreadable file, a line with more than one token, or no ids at all.
  """
  if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec).strip():
    raise DataError(f"subset_ids={spec!r}: expected a file of motion ids or one of "
                    f"{', '.join(PAPER_PREFIX + str(n) for n in PAPER_SIZES)}")
  spec = os.fspath(spec).strip()
  if spec.startswith(PAPER_PREFIX):
    size = spec[len(PAPER_PREFIX):]
    if not size.isdigit() or int(size) not in PAPER_SIZES:
      raise DataError(f"subset_ids={spec!r}: unknown paper subset; expected one of "
                      f"{', '.join(PAPER_PREFIX + str(n) for n in PAPER_SIZES)}")
    return _read_id_file(paper_subset_path(int(size)), spec)
  return _read_id_file(os.path.expanduser(spec), spec)
