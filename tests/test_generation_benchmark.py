"""The generation benchmark's timing: every program once per round, in a rotated order."""

from benchmarks import generation


def test_interleaved_rounds_rotate_the_order():
  calls = []
  fns = {name: (lambda name=name: calls.append(name)) for name in ("fused", "staged", "fit")}
  times = generation._interleaved_times(fns, repeats=4)
  assert calls == ["fused", "staged", "fit", "staged", "fit", "fused",
                   "fit", "fused", "staged", "fused", "staged", "fit"]
  assert {name: len(runs) for name, runs in times.items()} == {"fused": 4, "staged": 4, "fit": 4}
