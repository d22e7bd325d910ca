"""The one metrics writer: rows to metrics.jsonl, scalars to TensorBoard runs, read back."""

from __future__ import annotations

import numpy as np

from selfconsume import metric_writers
from selfconsume import outputs


def test_scalars_go_to_their_run_and_non_numbers_are_skipped(tmp_path):
  with metric_writers.MetricsWriter(str(tmp_path), enabled=True) as writer:
    writer.scalars(0, {"fid": 1.5, "diversity": np.float32(0.25), "steps": 3,
                       "loss": np.asarray(0.75), "missing": None, "bad": float("nan"),
                       "r_precision": [0.1, 0.2], "variant": "baseline", "fell": True},
                   run="n8_lambda1", prefix="eval/")
    writer.scalars(2, {"fid": 1.0}, run="n8_lambda1", prefix="eval/")
    writer.scalars(1, {"w2": 0.5})
  root = tmp_path / "tensorboard"
  assert metric_writers.read_scalars(str(root / "n8_lambda1")) == {
      "eval/fid": [(0, 1.5), (2, 1.0)], "eval/diversity": [(0, 0.25)],
      "eval/steps": [(0, 3.0)], "eval/loss": [(0, 0.75)]}
  everything = metric_writers.read_scalars(str(root))
  assert everything["w2"] == [(1, 0.5)] and "eval/fid" in everything


def test_rows_append_to_metrics_jsonl(tmp_path):
  writer = metric_writers.MetricsWriter(str(tmp_path), enabled=True)
  writer.rows([{"generation": 0, "fid": np.float64(2.0)}])
  writer.rows([{"generation": 1, "fid": float("nan"), "r": np.arange(2)}])
  writer.close()
  assert outputs.read_jsonl(tmp_path / "metrics.jsonl") == [
      {"generation": 0, "fid": 2.0}, {"generation": 1, "fid": None, "r": [0, 1]}]
  writer.replace_rows([{"generation": 0, "fid": 1.0}])
  assert outputs.read_jsonl(tmp_path / "metrics.jsonl") == [{"generation": 0, "fid": 1.0}]


def test_a_process_that_does_not_write_files_writes_nothing(tmp_path):
  writer = metric_writers.MetricsWriter(str(tmp_path), enabled=False)
  writer.rows([{"fid": 1.0}])
  writer.replace_rows([{"fid": 1.0}])
  writer.scalars(0, {"fid": 1.0}, run="a")
  writer.close()
  assert list(tmp_path.iterdir()) == []
