"""The report of one or several motion-loop runs: report.html, and the console's closing table.

`write_report([workdir, ...])` reads what the runs wrote (metrics.jsonl, config.json,
correction_floor.json, evaluator.json, videos/) and writes one HTML page:

  results      per run, the last and the best (lowest-FID) generation of every variant and
               generation 0, each value with its 95% interval where the rows carry
               `<metric>_ci95`; reference rows: the real data's own
               scores (real-vs-real FID) and the correction floor
  seeds        given several runs: per variant and generation the mean over runs and its
               95% interval (Student t over runs), as a table and as figures with bands
  figures      every metric against generation, integer generation ticks, reference lines
               for the real data and the correction floor (PNG, embedded)
  videos       the sampled vs physics-corrected motions and the prompt videos, each with a
               link to its interactive 3-D view (videos/*.html)
  evaluator    which evaluator scored the runs (evaluator.json) and what the FID means
  config       each run's config.json

Figures are embedded; videos and 3-D views are linked by relative paths, so the page works
in place (or moved together with the workdirs). `selfconsume.sweep` writes it at the end
of every run; `python -m experiments.report --workdir=RUN [RUN ...]` on demand.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import html
import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from selfconsume import loop_plots
from selfconsume import outputs
from selfconsume.errors import DataError

Row = Mapping[str, Any]

# (metric, column title, better): the results table's columns, in order.
COLUMNS = (
    ("fid", "FID", "lower"),
    ("r_precision_top3", "R-prec top-3", "higher"),
    ("matching", "matching", "lower"),
    ("diversity", "diversity", "near real"),
    ("multimodality", "multimodality", "higher"),
    ("float_mm", "float mm", "lower"),
    ("penetrate_mm", "penetrate mm", "lower"),
    ("skate", "skate", "lower"),
    ("tracking_error_m", "tracking m", "lower"),
    ("fall_rate", "fall rate", "lower"),
)
PLOTTED = tuple(c[0] for c in COLUMNS)
# The short table printed at the end of every run.
CONSOLE_COLUMNS = ("fid", "r_precision_top3", "float_mm", "penetrate_mm", "skate",
                   "tracking_error_m", "fall_rate")
VARIANT_ORDER = ("generation0", "baseline", "self_consuming", "self_correcting")
REPORT_FILE = "report.html"
VIDEO_EXTENSIONS = (".mp4", ".gif")

FID_NOTE = (
    "FID, R-precision, matching, diversity and multimodality are measured in the embedding "
    "space of this project's own text-motion evaluator (two contrastively trained encoders, "
    "Guo et al.'s protocol), trained on this run's training split and recorded in "
    "evaluator.json. They compare generations, variants and seeds of runs on the same data "
    "and evaluator; they are not comparable with published text-to-motion numbers, which use "
    "Guo et al.'s released evaluator on real HumanML3D. The real data's own FID (real vs "
    "real: the test motions of the evaluation prompts against all test motions) is the "
    "floor a perfect generator reaches with this number of prompts.")


# ----------------------------------------------------------------------------- reading runs


@dataclasses.dataclass(frozen=True)
class Run:
  """What one workdir holds for the report."""
  workdir: str
  rows: list[dict[str, Any]]
  config: dict[str, Any]
  floor: dict[str, Any] | None
  evaluator: dict[str, Any] | None

  @property
  def seed(self) -> int | None:
    return self.config.get("seed")

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(self.workdir)) or self.workdir


def load_run(workdir: str) -> Run:
  """Reads a motion run's workdir. Raises DataError when it has no metrics.jsonl rows."""
  rows = outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  if not rows:
    raise DataError(f"{workdir}: no metrics.jsonl rows; not a workdir of `python -m "
                    "experiments.run --config=experiments/configs/humanml.py` (or it has not "
                    "finished a generation yet)")
  read = lambda name: (outputs.read_json(os.path.join(workdir, name))  # noqa: E731
                       if os.path.exists(os.path.join(workdir, name)) else None)
  return Run(workdir=workdir, rows=rows, config=read("config.json") or {},
             floor=read("correction_floor.json"), evaluator=read("evaluator.json"))


def flat(row: Row) -> dict[str, Any]:
  """A row with r_precision [top1, top2, top3] also as r_precision_top1.. ."""
  out = dict(row)
  values = row.get("r_precision")
  if isinstance(values, (list, tuple)):
    for k, v in enumerate(values):
      out[f"r_precision_top{k + 1}"] = v
  return out


def _variant_rank(variant: str) -> int:
  return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def _runs_of(rows: Iterable[Row]) -> dict[tuple[int, float, str], list[Row]]:
  """(n, lambda, variant) -> rows by generation; generation 0 (shared) under 'generation0'."""
  groups: dict[tuple[int, float, str], list[Row]] = collections.defaultdict(list)
  seen_gen0: set[int] = set()
  for row in rows:
    if row["generation"] == 0:
      if row["n"] not in seen_gen0:
        seen_gen0.add(row["n"])
        groups[(row["n"], 0.0, "generation0")].append(row)
    groups[(row["n"], float(row["lambda"]), row["variant"])].append(row)
  return {key: sorted(value, key=lambda r: r["generation"])
          for key, value in sorted(groups.items(),
                                   key=lambda kv: (kv[0][0], kv[0][1], _variant_rank(kv[0][2])))}


def results_table(rows: Sequence[Row]) -> list[dict[str, Any]]:
  """The results table: generation 0, then per variant its last and its best generation.

  Best = lowest FID among the generations after 0 (a variant whose every generation is
  worse than generation 0 has a "best" later generation all the same). Each entry:
  {'n', 'lambda', 'variant', 'kind' ('generation 0' | 'last' | 'best'), 'generation',
  'row' (the flattened metrics row)}.
  """
  table = []
  for (n, ratio, variant), run_rows in _runs_of(rows).items():
    if variant == "generation0":
      table.append(dict(n=n, variant=variant, kind="generation 0", generation=0,
                        row=flat(run_rows[0]), **{"lambda": 0.0}))
      continue
    later = [r for r in run_rows if r["generation"] > 0]
    if not later:
      continue
    last = later[-1]
    scored = [r for r in later if isinstance(r.get("fid"), (int, float))]
    best = min(scored, key=lambda r: r["fid"]) if scored else last
    for kind, row in (("last", last), ("best", best)):
      table.append(dict(n=n, variant=variant, kind=kind, generation=int(row["generation"]),
                        row=flat(row), **{"lambda": ratio}))
  return table


def reference_rows(rows: Sequence[Row], floor: Mapping[str, Any] | None) -> list[dict[str, Any]]:
  """'real data' and 'correction floor' rows of the results table (values per metric)."""
  lines = loop_plots.reference_lines(rows, floor)
  out = []
  for label in ("real data", "correction floor"):
    values = {metric: value for metric, refs in lines.items() for l, value in refs if l == label}
    if values:
      out.append({"label": label, "values": values})
  return out


# ----------------------------------------------------------------------------- over runs


def interval(values: Sequence[float]) -> tuple[float, float | None]:
  """Mean and the half-width of its 95% Student-t interval (None for a single value)."""
  x = np.asarray(values, np.float64)
  if x.size < 2:
    return float(x.mean()), None
  half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
  return float(x.mean()), float(half)


def aggregate(runs: Sequence[Run]) -> list[dict[str, Any]]:
  """Per (n, lambda, variant, generation): mean over runs and 95% interval, as metric rows.

  Each returned row has n, lambda, variant, generation, num_runs, and for every numeric
  metric (r_precision flattened) the mean and `<metric>_ci95` (Student t over the runs that
  have that generation; absent for one run).
  """
  groups: dict[tuple, list[dict[str, Any]]] = collections.defaultdict(list)
  for run in runs:
    for row in run.rows:
      groups[(row["n"], float(row["lambda"]), row["variant"], row["generation"])].append(
          flat(row))
  out = []
  for (n, ratio, variant, generation), members in sorted(
      groups.items(), key=lambda kv: (kv[0][0], kv[0][1], _variant_rank(kv[0][2]), kv[0][3])):
    row: dict[str, Any] = {"n": n, "lambda": ratio, "variant": variant,
                           "generation": generation, "num_runs": len(members)}
    names = [k for k, v in members[0].items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)
             and k not in ("n", "lambda", "generation", "seed") and not k.endswith("_ci95")]
    for name in names:
      values = [m[name] for m in members if isinstance(m.get(name), (int, float))]
      if not values:
        continue
      mean, half = interval(values)
      row[name] = mean
      if half is not None:
        row[f"{name}_ci95"] = half
    out.append(row)
  return out


def config_differences(runs: Sequence[Run]) -> list[str]:
  """Dotted config fields (other than seed) whose values differ between the runs."""
  def leaves(d, prefix=""):
    for k, v in d.items():
      if isinstance(v, dict):
        yield from leaves(v, f"{prefix}{k}.")
      else:
        yield f"{prefix}{k}", json.dumps(v, sort_keys=True, default=str)
  flats = [dict(leaves(r.config)) for r in runs]
  keys = sorted(set().union(*flats)) if flats else []
  return [k for k in keys if k != "seed" and len({f.get(k) for f in flats}) > 1]


# ----------------------------------------------------------------------------- text


def _format(value: Any, half: float | None = None) -> str:
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
    return "-"
  digits = 3 if abs(value) < 100 else 1
  text = f"{value:.{digits}f}"
  if half is not None and math.isfinite(half) and half > 0:
    text += f" ± {half:.{digits}f}"
  return text


def summary_text(rows: Sequence[Row], floor: Mapping[str, Any] | None = None, *,
                 title: str = "") -> str:
  """The closing table of a run: generation 0, last and best generation of every variant."""
  header = ["variant", "kind", "gen"] + [m for m in CONSOLE_COLUMNS]
  lines = []
  for entry in results_table(rows):
    variant = entry["variant"]
    if entry["variant"] not in ("generation0", "baseline"):
      variant += f" (lambda {entry['lambda']:g})"
    if len({r["n"] for r in rows}) > 1:
      variant = f"n{entry['n']} {variant}"
    lines.append([variant, entry["kind"], str(entry["generation"])] + [
        _format(loop_plots.metric_value(entry["row"], m)) for m in CONSOLE_COLUMNS])
  for ref in reference_rows(rows, floor):
    lines.append([ref["label"], "", ""] + [_format(ref["values"].get(m))
                                             for m in CONSOLE_COLUMNS])
  widths = [max(len(x) for x in column) for column in zip(header, *lines)]
  fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(cells, widths)))
  out = [title] if title else []
  out += [fmt(header), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines]
  return "\n".join(out)


# ----------------------------------------------------------------------------- html


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
tr.ref td { color: #555; font-style: italic; background: #fafafa; }
tr.best td { background: #f3f8ff; }
.note { font-size: 13px; color: #444; max-width: 950px; }
.videos { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #444; }
video, img.video { max-width: 640px; border: 1px solid #ddd; }
img.fig { max-width: 100%; }
pre { font-size: 11px; background: #f7f7f7; padding: 8px; overflow: auto; max-height: 480px; }
iframe { border: 1px solid #ccc; width: 100%; height: 620px; }
"""


def _cell(metric: str, row: Mapping[str, Any]) -> str:
  value = loop_plots.metric_value(row, metric)
  half = loop_plots.metric_interval(row, metric)
  attrs = f' data-metric="{metric}"'
  if value is not None:
    attrs += f' data-value="{value!r}"'
  if half is not None:
    attrs += f' data-ci95="{half!r}"'
  return f"<td{attrs}>{html.escape(_format(value, half))}</td>"


def _results_html(run: Run) -> str:
  head = "".join(f'<th title="{better} is better">{html.escape(title)}</th>'
                 for _, title, better in COLUMNS)
  parts = [f'<table class="results" data-run="{html.escape(run.workdir)}"><tr>'
           f'<th class="l">n</th><th class="l">&lambda;</th><th class="l">variant</th>'
           f'<th class="l">row</th><th>gen</th>{head}</tr>']
  for entry in results_table(run.rows):
    parts.append(
        f'<tr class="{entry["kind"].replace(" ", "")}" data-variant="{entry["variant"]}" '
        f'data-kind="{entry["kind"]}" data-n="{entry["n"]}" data-lambda="{entry["lambda"]!r}" '
        f'data-generation="{entry["generation"]}"><td class="l">{entry["n"]}</td>'
        f'<td class="l">{entry["lambda"]:g}</td><td class="l">{entry["variant"]}</td>'
        f'<td class="l">{entry["kind"]}</td><td>{entry["generation"]}</td>'
        + "".join(_cell(m, entry["row"]) for m, _, _ in COLUMNS) + "</tr>")
  for ref in reference_rows(run.rows, run.floor):
    parts.append(f'<tr class="ref" data-kind="{ref["label"]}"><td class="l" colspan="5">'
                 f'{ref["label"]}</td>'
                 + "".join(_cell(m, ref["values"]) for m, _, _ in COLUMNS) + "</tr>")
  parts.append("</table>")
  return "\n".join(parts)


def _aggregate_html(rows: Sequence[Row], num_runs: int) -> str:
  """Mean ± 95% interval over runs: FID per generation and variant, then the last generation."""
  parts = []
  by_setting: dict[tuple[int, float], dict[str, list[Row]]] = collections.defaultdict(dict)
  for row in rows:
    by_setting[(row["n"], row["lambda"])].setdefault(row["variant"], []).append(row)
  for (n, ratio), variants in sorted(by_setting.items()):
    names = sorted(variants, key=_variant_rank)
    generations = sorted({r["generation"] for v in variants.values() for r in v})
    parts.append(f"<h3>n = {n}, &lambda; = {ratio:g}: FID, mean ± 95% interval over "
                 f"{num_runs} runs</h3>")
    parts.append('<table class="aggregate" data-n="%d" data-lambda="%r"><tr><th>gen</th>%s'
                 "</tr>" % (n, ratio, "".join(f"<th>{v}</th>" for v in names)))
    for g in generations:
      cells = []
      for v in names:
        match = [r for r in variants[v] if r["generation"] == g]
        cells.append(_cell("fid", match[0]).replace("<td", f'<td data-variant="{v}" '
                                                     f'data-generation="{g}"', 1)
                     if match else "<td>-</td>")
      parts.append(f"<tr><td>{g}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
  return "\n".join(parts)


def _figures_html(rows: Sequence[Row], references: Mapping[str, Any], title: str) -> str:
  parts = []
  for n, ratio in loop_plots.settings(rows):
    fig = loop_plots.setting_figure(rows, n, ratio, PLOTTED, references,
                                    title=f"{title}: n = {n}, lambda = {ratio:g}")
    if fig is None:
      continue
    data = base64.b64encode(loop_plots.figure_png(fig)).decode("ascii")
    parts.append(f'<img class="fig" alt="n{n} lambda{ratio:g}" '
                 f'src="data:image/png;base64,{data}">')
  return "\n".join(parts)


def _videos(workdir: str) -> list[str]:
  """Video files under workdir/videos: correction videos first, then by path."""
  found = []
  for root, _, files in os.walk(os.path.join(workdir, "videos")):
    for name in files:
      if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS and ".tmp" not in name:
        found.append(os.path.join(root, name))
  return sorted(found, key=lambda p: ("correction" not in os.path.basename(p), p))


def _videos_html(run: Run, out_dir: str) -> str:
  videos = _videos(run.workdir)
  if not videos:
    return "<p class='note'>No videos (config.outputs.videos is off).</p>"
  parts = ['<div class="videos">']
  viewer = None
  for path in videos:
    rel = html.escape(os.path.relpath(path, out_dir))
    label = html.escape(os.path.relpath(path, os.path.join(run.workdir, "videos")))
    view = os.path.splitext(path)[0] + ".html"
    link = ""
    if os.path.exists(view):
      link = (f' &middot; <a href="{html.escape(os.path.relpath(view, out_dir))}">'
              "interactive 3-D view</a>")
      if "correction" in os.path.basename(path):
        viewer = view
    media = (f'<video src="{rel}" controls loop muted autoplay playsinline></video>'
             if path.lower().endswith(".mp4") else f'<img class="video" src="{rel}" alt="{label}">')
    parts.append(f"<figure>{media}<figcaption>{label}{link}</figcaption></figure>")
  parts.append("</div>")
  if viewer is not None:
    parts.append(f"<h3>Interactive 3-D view: {html.escape(os.path.relpath(viewer, run.workdir))}"
                 "</h3><p class='note'>Sampled (orange) and physics-corrected (blue) motion "
                 "overlaid; drag to orbit, wheel to zoom.</p>"
                 f'<iframe src="{html.escape(os.path.relpath(viewer, out_dir))}"></iframe>')
  return "\n".join(parts)


def _evaluator_html(runs: Sequence[Run]) -> str:
  parts = [f"<p class='note'>{html.escape(FID_NOTE)}</p>",
           "<table><tr><th class='l'>run</th><th class='l'>evaluator fingerprint</th>"
           "<th class='l'>trained on data</th><th>real-vs-real FID</th>"
           "<th>training steps</th></tr>"]
  for run in runs:
    e = run.evaluator or {}
    parts.append(f"<tr><td class='l'>{html.escape(run.name)}</td>"
                 f"<td class='l'>{html.escape(str(e.get('fingerprint', 'not recorded')))}</td>"
                 f"<td class='l'>{html.escape(str(e.get('data_fingerprint', '-')))}</td>"
                 f"<td>{_format(e.get('real_fid'))}</td>"
                 f"<td>{(e.get('info') or {}).get('steps', '-')}</td></tr>")
  parts.append("</table>")
  prints = {(r.evaluator or {}).get("fingerprint") for r in runs}
  if len(runs) > 1 and len(prints) > 1:
    parts.append("<p class='note'><b>The runs were scored by different evaluators</b>: their "
                 "numbers are not directly comparable.</p>")
  return "\n".join(parts)


def default_out(workdirs: Sequence[str]) -> str:
  """workdir/report.html for one run; the runs' common parent directory for several."""
  if len(workdirs) == 1:
    return os.path.join(workdirs[0], REPORT_FILE)
  parent = os.path.commonpath([os.path.abspath(w) for w in workdirs])
  return os.path.join(parent, REPORT_FILE)


def write_report(workdirs: Sequence[str], out: str | None = None) -> str:
  """Writes the report of the runs in `workdirs` (see the module docstring); returns its path."""
  if not workdirs:
    raise DataError("no workdirs to report on")
  runs = [load_run(w) for w in workdirs]
  out = out or default_out(workdirs)
  out_dir = os.path.dirname(os.path.abspath(out))
  names = ", ".join(html.escape(r.name) for r in runs)
  now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  body = [f"<h1>Self-consuming motion loop: {names}</h1>",
          f"<p class='note'>Written {now} by <code>python -m experiments.report</code>. "
          "Runs: " + "; ".join(
              f"<code>{html.escape(os.path.abspath(r.workdir))}</code> (seed {r.seed}, preset "
              f"{html.escape(repr(r.config.get('preset', '')))}, {len(r.rows)} rows)"
              for r in runs) + "</p>"]
  if len(runs) > 1:
    differ = config_differences(runs)
    agg = aggregate(runs)
    body.append(f"<h2>Over {len(runs)} runs (seeds {', '.join(str(r.seed) for r in runs)})</h2>")
    if differ:
      body.append("<p class='note'><b>The runs' configs differ in more than the seed</b>: "
                  + html.escape(", ".join(differ[:12])) + "</p>")
    body.append("<p class='note'>Mean over runs ± the half-width of the 95% Student-t "
                "interval over runs (runs that reached a generation).</p>")
    body.append(_aggregate_html(agg, len(runs)))
    references = loop_plots.reference_lines([r for run in runs for r in run.rows],
                                            runs[0].floor)
    body.append(_figures_html(agg, references, "mean over runs"))
  for run in runs:
    body.append(f"<h2>Results: {html.escape(run.name)}</h2>")
    body.append("<p class='note'>Last and best (lowest-FID after generation 0) generation of "
                "every variant; ± is the half-width of the 95% interval the row carries "
                "(<code>&lt;metric&gt;_ci95</code>: over evaluation repeats, or bootstrap "
                "resamples of the prompts with one repeat, for the evaluator's metrics; over "
                "motions for the physical ones). Baseline trains on real data only "
                "(&lambda; = 0). Reference rows: the real test motions scored as if "
                "generated (real data) and after physics correction (correction floor).</p>")
    body.append(_results_html(run))
    body.append(_figures_html(run.rows, loop_plots.reference_lines(run.rows, run.floor),
                              run.name))
    body.append(f"<h2>Videos: {html.escape(run.name)}</h2>")
    body.append(_videos_html(run, out_dir))
  body.append("<h2>Evaluator</h2>")
  body.append(_evaluator_html(runs))
  body.append("<h2>Config</h2>")
  for run in runs:
    body.append(f"<details><summary>{html.escape(run.name)}: config.json</summary><pre>"
                f"{html.escape(json.dumps(run.config, indent=2, default=str))}</pre></details>")
  page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
          f"<title>report: {names}</title><style>{_CSS}</style></head><body>\n"
          + "\n".join(body) + "\n</body></html>\n")
  outputs.write_text_atomic(out, page)
  return out
