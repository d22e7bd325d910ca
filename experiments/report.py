r"""Writes report.html for one or several motion runs (several: e.g. the seeds of one setting).

  python -m experiments.report --workdir=runs/humanml
  python -m experiments.report --workdir=runs/humanml_seeds/seed_0 \
      --workdir=runs/humanml_seeds/seed_1 --workdir=runs/humanml_seeds/seed_2
  python -m experiments.report --workdir=runs/a,runs/b --out=/tmp/report.html

One run: WORKDIR/report.html (the same page every run writes when it ends). Several runs:
the page adds their aggregate (mean and 95% interval over runs per variant and generation)
and is written to the runs' common parent directory unless --out says otherwise. The page
embeds its figures and links the runs' videos and 3-D views by relative paths. See
selfconsume/report.py for what it holds.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from selfconsume import errors
from selfconsume import report


def define_flags() -> None:
  flags.DEFINE_multi_string("workdir", None, "Run directories (repeat the flag or separate "
                            "them with commas).")
  flags.DEFINE_string("out", None, "Output file (default: WORKDIR/report.html for one run, "
                      "the common parent directory's report.html for several).")


def main(argv):
  workdirs = [w for value in (flags.FLAGS.workdir or []) for w in value.split(",") if w]
  workdirs += argv[1:]  # `--workdir=A B C` leaves B and C as arguments
  try:
    if not workdirs:
      raise errors.ConfigError("--workdir is required")
    path = report.write_report(workdirs, flags.FLAGS.out)
  except (errors.ConfigError, errors.DataError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(path)


if __name__ == "__main__":
  define_flags()
  app.run(main)
