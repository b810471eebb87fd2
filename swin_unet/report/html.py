"""report.html: one page with a run's settings, scores, box plots, cases worst first and figures.

Standard library only (matplotlib draws the figures it references, in ``figures/`` beside it);
images are referenced by relative paths, so the folder opens from disk in any browser.
"""

from __future__ import annotations

import datetime
import html
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..io.atomic import atomic_text
from ..palette import colour_hex
from .tables import conventions_line
from .viewer import VIEWER_SCRIPT, viewer_html

__all__ = ["write_html_report", "case_mean", "run_title", "MAX_GRID"]

# A 2-D run's grid shows this many images, worst first; the others are linked.
MAX_GRID = 24

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:1300px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}
table.settings td{text-align:left}table.settings td:first-child{font-weight:600}
th.sortable{cursor:pointer}th.sortable:hover{background:#e4e4e4}
.chip{display:inline-block;margin:.15em .8em .15em 0;white-space:nowrap}
.chip span{display:inline-block;width:1em;height:1em;border-radius:2px;
vertical-align:-.15em;margin-right:.35em}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em}
.case{margin:1.2em 0}.case img,.plot{max-width:100%;height:auto;border:1px solid #eee}
.case img.paper{max-width:640px}
.note{color:#555;font-size:.9em}
.warnings{border:1px solid #e0a800;background:#fff8e1;padding:.4em 1em;margin:1em 0}
.warnings h2{margin:.2em 0;border:0;font-size:1.1em}.warnings li{margin:.2em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
.grid .case{margin:0}.grid h3{font-size:1em;margin:.2em 0}
.viewer{margin:.6em 0 1.4em}.views{display:flex;flex-wrap:wrap;gap:.6em}
.view{margin:0}.view canvas{width:320px;image-rendering:pixelated;border:1px solid #ccc;
cursor:crosshair}.view figcaption{font-size:.85em;color:#555}
.controls label{margin-left:.8em}.controls .slider{width:240px;vertical-align:middle}
.hover{font-size:.9em;color:#333;min-height:1.3em}
"""

# Click a column header to sort by it (numbers by their exact data-value); click again to flip.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th, column){
    th.classList.add("sortable");
    th.addEventListener("click", function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.order !== "up"; th.dataset.order = up ? "up" : "down";
      function key(row){ var cell = row.cells[column], v = cell.dataset.value;
        if (v === undefined) return cell.textContent;
        return v === "" ? (up ? Infinity : -Infinity) : parseFloat(v); }
      rows.sort(function(a, b){ var x = key(a), y = key(b);
        var c = (typeof x === "number") ? x - y : String(x).localeCompare(String(y));
        return up ? c : -c; });
      rows.forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def case_mean(scores: dict, key: str) -> Optional[float]:
    """Mean of ``key`` ("dice" or "hd95") over a case's counted classes (None if none)."""
    values = [s[key] for s in scores.values() if not _is_missing(s.get(key))]
    return sum(values) / len(values) if values else None


def _cell(value: Any, scale: float = 1.0, digits: int = 2, css: str = "") -> str:
    """A numeric cell: the rounded number shown, the exact value in ``data-value``."""
    klass = f' class="{css}"' if css else ""
    if _is_missing(value):
        return f'<td data-value=""{klass}>-</td>'
    return (f'<td data-value="{float(value)!r}"{klass}>'
            f"{scale * float(value):.{digits}f}</td>")


def _text(value: Any) -> str:
    return html.escape(str(value))


def _swatch(index: int) -> str:
    return f'<span class="swatch" style="background:{colour_hex(index)}"></span>'


def _settings_table(settings: dict) -> str:
    rows = "".join(f"<tr><td>{_text(k)}</td><td>{_text(v)}</td></tr>"
                   for k, v in settings.items() if v is not None and v != "")
    return f'<table class="settings" id="settings">{rows}</table>'


def _legend(class_names: Sequence[str]) -> str:
    chips = "".join(f'<span class="chip"><span style="background:{colour_hex(i)}"></span>'
                    f"{_text(name)}</span>" for i, name in enumerate(class_names, start=1))
    return f'<p id="legend">{chips}</p>'


def _score_tables(summary: dict) -> str:
    unit = summary.get("hd95_unit", "mm")
    classes = summary["classes"]
    head = "".join(f"<th>{_text(n)}</th>" for n in classes)
    paper = (f'<table id="paper-table"><caption class="note">mean Dice and HD95 over cases, '
             f"then Dice (%) per class</caption><thead><tr><th>mean Dice (%)</th>"
             f"<th>mean HD95 ({_text(unit)})</th>"
             f"{head}</tr></thead><tbody><tr>{_cell(summary['mean_dice'], 100)}"
             f"{_cell(summary['mean_hd95'])}"
             + "".join(_cell(c["dice"], 100) for c in classes.values())
             + "</tr></tbody></table>")
    rows = []
    for index, (name, stats) in enumerate(classes.items(), start=1):
        rows.append(f'<tr data-class="{_text(name)}"><td class="name">{_swatch(index)}'
                    f"{_text(name)}</td>{_cell(stats['dice'], 100)}"
                    f"{_cell(stats['hd95'])}"
                    + "".join(f"<td>{stats.get(k, 0)}</td>" for k in
                              ("n_counted", "n_missed", "n_false_positive", "n_absent"))
                    + "</tr>")
    per_class = (f'<table id="class-table"><thead><tr><th class="name">class</th>'
                 f"<th>Dice (%)</th><th>HD95 ({_text(unit)})</th><th>counted</th>"
                 f"<th>missed</th><th>false positive</th><th>absent</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table>")
    return paper + per_class


def _case_table(summary: dict) -> str:
    """Per case: mean Dice, mean HD95, Dice per class; worst mean Dice first."""
    unit = summary.get("hd95_unit", "mm")
    names = list(summary["classes"])
    cases = summary["cases"]
    rows = []
    for case in _case_order(summary):
        scores = cases[case]
        rows.append(f'<tr data-case="{_text(case)}"><td class="name">'
                    f'<a href="#case-{_text(case)}">{_text(case)}</a></td>'
                    f"{_cell(case_mean(scores, 'dice'), 100)}{_cell(case_mean(scores, 'hd95'))}"
                    + "".join(_cell(scores[n]["dice"], 100) for n in names) + "</tr>")
    head = "".join(f"<th>{_swatch(i)}{_text(n)}</th>"
                   for i, n in enumerate(names, start=1))
    return (f'<table id="case-table" class="sortable"><caption class="note">mean Dice, '
            f"mean HD95, then Dice (%) per class</caption><thead>"
            f'<tr><th class="name">case</th>'
            f"<th>mean Dice (%)</th><th>mean HD95 ({_text(unit)})</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _volume_table(volumes: dict[str, tuple[dict[str, float], str]],
                  class_names: Sequence[str]) -> str:
    """Per case the size of each predicted class: ml, mm² for a single slice, px without
    spacing; the unit in the header when all cases share it, else in every cell."""
    units = {unit for _, unit in volumes.values()}
    shared = units.pop() if len(units) == 1 else None
    suffix = f" ({_text(shared)})" if shared else ""
    head = "".join(f"<th>{_swatch(i)}{_text(n)}{suffix}</th>"
                   for i, n in enumerate(class_names, start=1))
    rows = []
    for case, (sizes, unit) in volumes.items():
        digits = 0 if unit in ("px", "voxels") else 2
        cells = "".join(_cell(sizes.get(n, 0.0), digits=digits) for n in class_names)
        if not shared:
            cells = cells.replace("</td>", f" {_text(unit)}</td>")
        rows.append(f'<tr data-case="{_text(case)}"><td class="name"><a href="#case-'
                    f'{_text(case)}">{_text(case)}</a></td>{cells}</tr>')
    return (f'<table id="volume-table" class="sortable"><thead><tr><th class="name">case</th>'
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def run_title(settings: dict) -> str:
    """What was segmented and with which model: the page's title."""
    model = Path(str(settings["checkpoint"])).name if settings.get("checkpoint") else None
    if settings.get("input"):
        what = f"{settings['input']}"
    elif settings.get("predictions"):
        return f"{settings['predictions']} scored against {settings.get('labels')}"
    else:
        what = f"{settings.get('data set') or 'data set'}"
        what += f" ({settings['split']} split)" if settings.get("split") else ""
    return f"{what} segmented with {model}" if model else what


def _warnings_box(warnings: Sequence[str]) -> str:
    items = "".join(f"<li>{_text(w)}</li>" for w in warnings)
    return (f'<div class="warnings" id="warnings"><h2>Warnings ({len(warnings)})</h2>'
            f"<ul>{items}</ul></div>") if warnings else ""


def _figures(order: Sequence[str], figures: dict[str, str], labelled: bool, kind: str,
             viewers: dict, class_names: Sequence[str]) -> list[str]:
    """The figures section: a grid for 2-D images (at most MAX_GRID), one case a row else."""
    what = "image, ground truth and prediction" if labelled else "image and prediction"
    cells = [f'<div class="case" id="case-{_text(c)}"><h3>{_text(c)}</h3>'
             f'<img src="{_text(figures[c])}" alt="{_text(c)}: {what}">'
             + (viewer_html(c, viewers[c], class_names) if c in viewers else "") + "</div>"
             for c in order]
    if kind != "image":
        return ["<h2>Figures</h2>", *cells]
    heading = "Images, worst first" if labelled else "Images"
    parts = [f"<h2>{heading} ({min(len(order), MAX_GRID)} of {len(order)})</h2>",
             f'<div class="grid" id="grid">{"".join(cells[:MAX_GRID])}</div>']
    if len(order) > MAX_GRID:
        links = ", ".join(f'<a href="{_text(figures[c])}">{_text(c)}</a>'
                          for c in order[MAX_GRID:])
        parts.append(f'<p class="note" id="more-figures">The other figures: {links}</p>')
    return parts


def write_html_report(path: Union[str, Path], class_names: Sequence[str], settings: dict,
                      figures: dict[str, str], summary: Optional[dict] = None,
                      box_plot: Optional[str] = None,
                      volumes: Optional[dict[str, tuple[dict[str, float], str]]] = None,
                      notes: Sequence[str] = (),
                      paper_figures: Optional[dict[str, str]] = None,
                      warnings: Sequence[str] = (), viewers: Optional[dict] = None,
                      kind: str = "volume") -> Path:
    """Write the report page.

    Parameters
    ----------
    path : str or Path
        ``OUTPUT/report.html``.
    class_names : sequence of str
        Foreground class names, class 1 first (the colours follow their order).
    settings : dict
        What the run was (checkpoint, data set, metric mode, ...), shown as a table.
    figures : dict of str to str
        Case name to its overlay figure, relative to the page.
    summary : dict, optional
        :func:`swin_unet.evaluation.metrics.summarize`'s result; None for a run without ground truth.
    box_plot : str, optional
        The box plot figure, relative to the page.
    volumes : dict, optional
        Case to (class name to predicted size, unit) (runs without ground truth).
    notes : sequence of str
        Remarks on the run (shown under the settings).
    paper_figures : dict of str to str, optional
        Case to its publication figure (``--figure-cases``), relative to the page.
    warnings : sequence of str
        What the run warned: a box at the top of the page.
    viewers : dict, optional
        Case to its slice strips (:func:`~swin_unet.report.viewer.render_strips`).
    kind : {"volume", "image"}
        "image" (every case a single 2-D image) lays the figures out in a grid.
    """
    path = Path(path)
    title = run_title(settings)
    parts = [f"<h1>{_text(title)}</h1>",
             f'<p class="note">written {datetime.datetime.now().isoformat(timespec="seconds")}'
             f"</p>", _warnings_box(warnings), "<h2>Run</h2>", _settings_table(settings)]
    if summary is not None:
        parts.append(f'<p class="note">{_text(conventions_line(summary))}</p>')
    parts += [f'<p class="note">{_text(n)}</p>' for n in notes]
    parts += ["<h2>Classes</h2>", _legend(class_names)]
    if summary is not None:
        parts += [f"<h2>Scores over {summary['n_cases']} case(s)</h2>", _score_tables(summary)]
        if box_plot:
            parts.append(f'<img class="plot" src="{_text(box_plot)}" '
                         f'alt="Dice and HD95 per class over cases">')
        parts += ['<h2>Cases, worst mean Dice first</h2><p class="note">Click a column to sort.'
                  "</p>", _case_table(summary)]
        order = [row for row in _case_order(summary) if row in figures]
    else:
        parts += ["<h2>Predicted sizes</h2>", _volume_table(volumes or {}, class_names)]
        order = list(figures)
    parts += _figures(order, figures, summary is not None, kind, viewers or {}, class_names)
    if paper_figures:
        parts.append("<h2>Publication figures</h2>")
        parts += [f'<div class="case"><h3>{_text(c)}</h3><img class="paper" src="{_text(f)}" '
                  f'alt="{_text(c)}: publication figure"></div>' for c, f in paper_figures.items()]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(parts) + f"\n<script>{_SORT_SCRIPT}{VIEWER_SCRIPT}</script>\n"
            "</body></html>\n")
    return atomic_text(path, page)


def _case_order(summary: dict) -> list[str]:
    """Cases worst mean Dice first (cases with nothing counted last)."""
    cases = summary["cases"]
    return sorted(cases, key=lambda c: (math.inf if case_mean(cases[c], "dice") is None
                                        else case_mean(cases[c], "dice"), c))
