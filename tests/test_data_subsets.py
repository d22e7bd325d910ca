"""The paper's n-subsets ship with the package and load by name; other specs are files."""

from __future__ import annotations

import os

import pytest

from selfconsume.data import subsets
from selfconsume.errors import DataError


@pytest.mark.parametrize("n, count", [(64, 65), (128, 129), (256, 257), (2794, 2794)])
def test_paper_subsets_load_by_name(n, count):
  ids = subsets.read_subset_ids(f"paper:{n}")
  assert len(ids) == count == len(set(ids))
  assert all(i.isdigit() or (i[0] == "M" and i[1:].isdigit()) for i in ids)
  assert any(i.startswith("M") for i in ids)        # mirrored clips are ordinary ids
  assert os.path.isfile(subsets.paper_subset_path(n))


def test_paper_subsets_are_nested_training_ids():
  sets = [set(subsets.read_subset_ids(f"paper:{n}")) for n in subsets.PAPER_SIZES]
  largest = sets[-1]
  assert all(s <= largest for s in sets[:-1])


def test_a_file_spec_reads_one_id_per_line(tmp_path):
  path = tmp_path / "ids.txt"
  path.write_text("000001\n\n  M000002  \n000003\n")
  assert subsets.read_subset_ids(str(path)) == ["000001", "M000002", "000003"]


@pytest.mark.parametrize("spec, message", [
    ("paper:65", "unknown paper subset; expected one of paper:64"),
    ("paper:", "unknown paper subset"),
    ("", "expected a file of motion ids or one of paper:64"),
    ("no/such/file.txt", "does not exist"),
])
def test_bad_specs_are_one_line_data_errors(spec, message):
  with pytest.raises(DataError, match=message) as info:
    subsets.read_subset_ids(spec)
  assert "\n" not in str(info.value)


def test_bad_files_are_data_errors(tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n")
  with pytest.raises(DataError, match="lists no motion ids"):
    subsets.read_subset_ids(str(empty))
  two = tmp_path / "two.txt"
  two.write_text("000001 000002\n")
  with pytest.raises(DataError, match=r"two.txt:1: expected one motion id per line"):
    subsets.read_subset_ids(str(two))
  binary = tmp_path / "binary.txt"
  binary.write_bytes(b"\xff\xfe\x00")
  with pytest.raises(DataError, match="not UTF-8"):
    subsets.read_subset_ids(str(binary))
  with pytest.raises(DataError, match="is not a file"):
    subsets.read_subset_ids(str(tmp_path))
