"""The one place a run's numbers are written: rows to metrics.jsonl, scalars to TensorBoard.

Every experiment and every trainer logs through `MetricsWriter`: the sweep's generation rows
(tags METRIC/VARIANT in one TensorBoard run per (n, lambda) setting), fit losses, the
evaluator's training, the digits rows and the Gaussian toy's curves. A TensorBoard "run" is a
subdirectory of `<workdir>/tensorboard/` (the empty name is the directory itself). Under
jax.distributed every process computes and process 0 alone writes (`parallel.is_file_writer`).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Iterable, Mapping

import numpy as np
import tensorboardX
from tensorboardX.proto import event_pb2

from selfconsume import outputs
from selfconsume import parallel


class MetricsWriter:
  """Appends rows to `<workdir>/metrics.jsonl` and logs scalars to `<workdir>/tensorboard/`.

  Args:
    workdir: the run's directory.
    enabled: write at all (default: this process is the one that writes files).
    jsonl_name, tensorboard_name: file and directory names under `workdir`.
  """

  def __init__(self, workdir: str, *, enabled: bool | None = None,
               jsonl_name: str = "metrics.jsonl", tensorboard_name: str = "tensorboard"):
    self.jsonl_path = os.path.join(workdir, jsonl_name)
    self.tensorboard_dir = os.path.join(workdir, tensorboard_name)
    self.enabled = parallel.is_file_writer() if enabled is None else bool(enabled)
    self._runs: dict[str, Any] = {}

  def _run(self, run: str):
    if run not in self._runs:
      self._runs[run] = tensorboardX.SummaryWriter(os.path.join(self.tensorboard_dir, run))
    return self._runs[run]

  def scalars(self, step: int, values: Mapping[str, Any], *, run: str = "",
              prefix: str = "") -> None:
    """Logs `values` (name -> number) at `step` as PREFIX+NAME in TensorBoard run `run`.

    Values that are not finite numbers (None, NaN, lists) are skipped: a chart gets no point
    rather than a wrong one.
    """
    if not self.enabled:
      return
    writer = self._run(run)
    for name, value in values.items():
      number = None if isinstance(value, (str, bytes)) else np.asarray(value)
      if number is None or number.ndim != 0 or number.dtype.kind not in "iuf":
        continue
      if np.isfinite(number):
        writer.add_scalar(f"{prefix}{name}", float(number), int(step))

  def rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends rows to metrics.jsonl (each line written and flushed whole)."""
    if self.enabled:
      outputs.append_jsonl(self.jsonl_path, [outputs.to_jsonable(r) for r in rows])

  def replace_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
    """Rewrites metrics.jsonl as exactly `rows`, atomically (a crash leaves the old file)."""
    if self.enabled:
      outputs.write_text_atomic(self.jsonl_path, "".join(
          json.dumps(outputs.to_jsonable(r)) + "\n" for r in rows))

  def flush(self) -> None:
    for writer in self._runs.values():
      writer.flush()

  def close(self) -> None:
    for writer in self._runs.values():
      writer.close()
    self._runs.clear()

  def __enter__(self) -> "MetricsWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_scalars(directory: str) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value), ...] of every TensorBoard event file under `directory` (runs
  included, in file order): the scalars back, without TensorBoard itself."""
  scalars: dict[str, list[tuple[int, float]]] = {}
  for root, _, files in sorted(os.walk(directory)):
    for name in sorted(files):
      if not name.startswith("events.out"):
        continue
      with open(os.path.join(root, name), "rb") as f:
        data = f.read()
      # TFRecord framing: length (uint64), its CRC (4 bytes), the event, the event's CRC.
      i = 0
      while i + 12 <= len(data):
        size = struct.unpack("<Q", data[i:i + 8])[0]
        event = event_pb2.Event.FromString(data[i + 12:i + 12 + size])
        i += 12 + size + 4
        for value in event.summary.value:
          scalars.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return scalars
