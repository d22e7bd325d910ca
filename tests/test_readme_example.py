"""The README's worked example (a new model and corrector in the loop) runs as written."""

from __future__ import annotations

import json
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _example() -> str:
  with open(README, encoding="utf-8") as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  examples = [b for b in blocks if "sweep.run_loop(" in b]
  assert len(examples) == 1, "the README should hold one worked example of sweep.run_loop"
  return examples[0]


def test_the_worked_example_runs_and_resumes(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  code = compile(_example(), "README.md (worked example)", "exec")
  exec(code, {"__name__": "readme_example"})  # pylint: disable=exec-used
  workdir = tmp_path / "runs" / "my_model"
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  variants = {r["variant"] for r in rows}
  assert variants == {"baseline", "self_consuming", "self_correcting"}
  last = {r["variant"]: r for r in rows if r["generation"] == 30}
  assert set(last) == variants
  # Every synthetic example was corrected (gamma = inf), and correction reached the rows.
  assert last["self_correcting"]["corrected_fraction"] == pytest.approx(1.0)
  for name in ("summary.json", "report.html", os.path.join("plots", "n20_lambda1.png")):
    assert (workdir / name).exists(), name
  comparison = json.loads((workdir / "summary.json").read_text())["comparisons"]["n20/lambda1"]
  assert "self_correcting_better_fid" in comparison
  printed = capsys.readouterr().out
  assert "self_correcting_better_fid" in printed

  # A rerun does no work: the rows are unchanged.
  before = (workdir / "metrics.jsonl").read_text()
  exec(code, {"__name__": "readme_example"})  # pylint: disable=exec-used
  assert (workdir / "metrics.jsonl").read_text() == before
