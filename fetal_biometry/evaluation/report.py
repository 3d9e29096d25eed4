"""The evaluation report: one HTML page a clinician or a reviewer reads, with its figures.

:func:`write` turns the per-model results that :func:`fetal_biometry.evaluation.scans.evaluate`
left in a folder (``OUT/<model>.json``) into ``OUT/report.html`` and, beside it, the figures as
PNGs for papers (drawn by :mod:`fetal_biometry.figures`)::

    OUT/report.html
    OUT/bland_altman_<model>.png    difference against mean, bias and 95 % limits (mm and %)
    OUT/scatter_<model>.png         measured against true AC, identity line
    OUT/confusion_<model>.png       confusion matrix normalised per true class
    OUT/class_accuracy_<model>.png  per-class accuracy
    OUT/plane_<model>.png           true/false accept/reject, rejection reasons tallied
    OUT/net_<model>.png             the deploy net's diagram (when graphviz is installed)
    OUT/comparison.png, OUT/class_accuracy_comparison.png   with several models

The page needs no network and no JavaScript: plain HTML with inline CSS, images beside it
(copy the folder to move it). Numbers in its summary tables carry a ``data-key`` naming their
field in ``summary.json``, so a test can check every one of them.
"""
from __future__ import annotations

import datetime
import html
import json
import os
import pathlib
import re
from typing import Callable, Iterable

import numpy as np

from fetal_biometry import atomic, figures
from fetal_biometry.labels import CLASSIFIER_CLASSES

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: #1d2327; background: #f4f5f7; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 21px; margin: 36px 0 8px;
     padding-top: 12px; border-top: 3px solid #1f77b4; } h3 { font-size: 16px; margin: 22px 0 6px; }
.meta { color: #555; margin: 0 0 14px; } .note { color: #555; font-size: 13px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13.5px; }
th, td { border: 1px solid #d5d8dc; padding: 4px 8px; text-align: right; vertical-align: top; }
td { white-space: nowrap; } th { background: #eef2f6; } td:first-child, th:first-child { text-align: left; }
table.kv td { text-align: left; } table.kv td:first-child { color: #555; white-space: nowrap; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; display: table; } figure img { max-width: 100%; border: 1px solid #e1e4e8; }
figcaption { display: table-caption; caption-side: bottom; font-size: 12.5px; color: #444;
             padding-top: 3px; }
.cases { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
.cases img { width: 100%; image-rendering: pixelated; }
.bad { color: #b03a2e; font-weight: 600; } .good { color: #1e8449; }
"""

FIGURES = (  # file prefix, figure maker, caption
    ("bland_altman", "Bland-Altman plot: the difference between measured and true AC against "
     "their mean, in mm (left) and as a share of the mean (right). Red: the bias (mean "
     "difference); grey dashed: the 95 % limits of agreement (bias +- 1.96 SD)."),
    ("scatter", "Measured against true AC; the line is identity (perfect agreement)."),
    ("confusion", "Confusion matrix of the pixels inside the fan, each row normalised to its "
     "true class: the diagonal is the per-class accuracy."),
    ("class_accuracy", "Per-class accuracy (share of each true class's pixels classified "
     "as that class)."),
    ("plane", "Plane verdicts against the true ones, and the reasons given for rejected planes."),
)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _e(value) -> str:
    return html.escape(str(value))


# --------------------------------------------------------------------------- figures

def model_figures(name: str, record: dict) -> dict[str, object]:
    """The report's figures of one model (file prefix -> matplotlib figure)."""
    summary, cases = record["summary"], record["cases"]
    measured = np.array([c["ac_mm"] for c in cases if c["ac_mm"] is not None], float)
    true = np.array([c["ac_true_mm"] for c in cases if c["ac_mm"] is not None], float)
    title = f"{name}: "
    return {
        "bland_altman": figures.bland_altman(measured, true, summary["ac_agreement"], title),
        "scatter": figures.agreement_scatter(measured, true, title),
        "confusion": figures.confusion_heatmap(summary["confusion"], CLASSIFIER_CLASSES, title),
        "class_accuracy": figures.class_accuracy_bars({name: summary["per_class_accuracy"]}, title),
        "plane": figures.plane_acceptance(summary["plane_outcomes"], summary["rejection_reasons"],
                                          title),
    }


def _save(out: pathlib.Path, file: str, fig) -> str:
    atomic.write_bytes(out / file, figures.figure_png(fig))
    return file


def _diagram(out: pathlib.Path, name: str, record: dict) -> tuple[str | None, str | None]:
    """The deploy net's diagram file, or None with the reason it could not be drawn."""
    deploy = record.get("model", {}).get("deploy")
    if not deploy or not pathlib.Path(deploy).is_file():
        return None, "no deploy prototxt recorded for this model"
    try:
        return figures.net_diagram(deploy, out / f"net_{_slug(name)}.png").name, None
    except (RuntimeError, ValueError, OSError) as error:
        return None, str(error)


# --------------------------------------------------------------------------- HTML pieces

def _number(key: str, value, digits: int, sign: str = "") -> str:
    return f'<span data-key="{_e(key)}">{value:{sign}.{digits}f}</span>'


SUMMARY_COLUMNS = ["model", "pixel acc.", *(c.replace("_", " ") for c in CLASSIFIER_CLASSES),
                   "AC measured", "median |AC error|", "90th pct. |AC error|", "max |AC error|",
                   "ACs off > 10 %",
                   "AC bias [95 % limits] (mm)",
                   "plane acceptance"]


def summary_row(name: str, s: dict) -> str:
    """One row of the summary table; every number tagged with its ``summary.json`` key."""
    cells = [_e(name), _number("pixel_accuracy", s["pixel_accuracy"], 3)]
    cells += [_number(f"per_class_accuracy.{c}", s["per_class_accuracy"][c], 3)
              for c in CLASSIFIER_CLASSES]
    cells.append(f'<span data-key="ac_measured">{s["ac_measured"]}</span>/'
                 f'<span data-key="cases">{s["cases"]}</span>')
    cells.append("-" if s["ac_median_error_percent"] is None else
                 f'{_number("ac_median_error_percent", s["ac_median_error_percent"], 1)} % '
                 f'({_number("ac_median_error_mm", s["ac_median_error_mm"], 1)} mm)')
    p90 = s.get("ac_p90_error_percent")
    cells.append("-" if p90 is None else f'{_number("ac_p90_error_percent", p90, 1)} %')
    worst = s.get("ac_max_error_percent")
    cells.append("-" if worst is None else f'{_number("ac_max_error_percent", worst, 1)} %')
    cells.append("-" if "ac_off_count" not in s else
                 f'<span data-key="ac_off_count">{s["ac_off_count"]}</span>')
    a = s.get("ac_agreement")
    cells.append("-" if a is None else
                 f'{_number("ac_agreement.bias_mm", a["bias_mm"], 1, "+")} '
                 f'[{_number("ac_agreement.loa_mm.0", a["loa_mm"][0], 1, "+")}, '
                 f'{_number("ac_agreement.loa_mm.1", a["loa_mm"][1], 1, "+")}]')
    cells.append("-" if s["plane_acceptance_accuracy"] is None else
                 _number("plane_acceptance_accuracy", s["plane_acceptance_accuracy"], 3))
    return f'<tr data-model="{_e(name)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def summary_table(summaries: dict[str, dict]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in SUMMARY_COLUMNS)
    rows = "\n".join(summary_row(name, s) for name, s in summaries.items())
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def _img(file: str, alt: str, caption: str = "", width: int | None = None) -> str:
    size = f' style="width:{width}px"' if width else ""
    text = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{_e(file)}" alt="{_e(alt)}"{size}>{text}</figure>'


def _flatten(data, prefix: str = "") -> Iterable[tuple[str, str]]:
    """Dotted keys and short values of a nested record (lists of numbers written inline)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}{key}.")
    elif isinstance(data, list) and len(data) > 12:
        yield prefix[:-1], f"[{len(data)} items]"
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for index, value in enumerate(data):
            yield from _flatten(value, f"{prefix}{index}.")
    else:
        yield prefix[:-1], json.dumps(data) if not isinstance(data, str) else data


def _key_values(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _agreement_sentence(s: dict) -> str:
    a = s.get("ac_agreement")
    if a is None:
        return "<p>Fewer than two ACs were measured: no agreement statistics.</p>"
    return (f"<p>AC agreement over the {a['n']} scans measured: bias {a['bias_mm']:+.2f} mm, "
            f"95 % limits of agreement {a['loa_mm'][0]:+.2f} to {a['loa_mm'][1]:+.2f} mm "
            f"({a['bias_percent']:+.2f} %, {a['loa_percent'][0]:+.2f} to "
            f"{a['loa_percent'][1]:+.2f} % of the mean).</p>")


def _verdict(accepted: bool) -> str:
    return "accept" if accepted else "reject"


def _case_caption(pick: dict, case: dict) -> str:
    error = ("AC not measured" if case["ac_mm"] is None else
             f"measured {case['ac_mm']:.1f} mm, error {case['ac_error_mm']:+.1f} mm "
             f"({case['ac_error_percent']:+.1f} %)")
    right = case["accepted"] == case["accepted_true"]
    verdict = (f'plane: true {_verdict(case["accepted_true"])}, measured '
               f'<span class="{"good" if right else "bad"}">{_verdict(case["accepted"])}</span>')
    reasons = f"<br>reasons: {_e('; '.join(case['reasons']))}" if case["reasons"] else ""
    return (f"<b>{_e(pick['case'])}</b>: {_e(pick['why'])}<br>true AC {case['ac_true_mm']:.1f} mm, "
            f"{_e(error)}<br>{verdict}{reasons}")


def model_section(name: str, record: dict, files: dict[str, str],
                  diagram: tuple[str | None, str | None]) -> str:
    s = record["summary"]
    parts = [f'<h2 id="model-{_e(_slug(name))}">Model: {_e(name)}</h2>',
             summary_table({name: s}), _agreement_sentence(s), '<div class="figures">']
    parts += [_img(files[key], f"{key} of {name}", caption) for key, caption in FIGURES]
    parts.append("</div>")
    outcomes = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in s["plane_outcomes"].items())
    reasons = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>"
                      for k, v in s["rejection_reasons"].items()) or '<tr><td colspan="2">none</td></tr>'
    parts.append('<div class="figures"><table><tr><th>plane verdict</th><th>scans</th></tr>'
                 f'{outcomes}</table><table><tr><th>reason for rejection</th><th>scans</th></tr>'
                 f'{reasons}</table></div>')
    by_name = {c["case"]: c for c in record["cases"]}
    picks = [p for p in record.get("overlays", []) if "file" in p]
    parts.append("<h3>Worst and typical cases</h3>")
    parts.append('<p class="note">Each: the truth (labels, true ellipse), the classified map, and '
                 "the measurement (fitted ellipse in cyan, boundary points green where they "
                 "support it and red where not, stomach and vein marked).</p>")
    parts.append('<div class="cases">' + "".join(
        _img(p["file"], f"{p['case']} ({p['why']})", _case_caption(p, by_name[p["case"]]))
        for p in picks) + "</div>" if picks else "<p>No overlays were drawn.</p>")
    parts.append("<h3>Provenance</h3>")
    parts.append(_key_values(_flatten(record.get("model", {}))))
    parts.append("<h3>Net</h3>")
    file, problem = diagram
    parts.append(_img(file, f"deploy net of {name}", "The deploy net, drawn by caffe.draw.")
                 if file else f'<p class="note">No diagram: {_e(problem)}</p>')
    return "\n".join(parts)


def comparison_section(summaries: dict[str, dict], files: list[str]) -> str:
    return "\n".join([
        '<h2 id="comparison">Side by side</h2>',
        "<p>The same held-out scans, one row per model (the ablation).</p>",
        summary_table(summaries), '<div class="figures">',
        _img(files[0], "comparison of the models", "Left: AC bias (dot) and 95 % limits of "
             "agreement (bar). Middle: median absolute AC error. Right: plane verdicts."),
        _img(files[1], "per-class accuracy of every model", "Per-class accuracy, model by model."),
        "</div>"])


def _header(records: dict[str, dict]) -> str:
    data = next(iter(records.values())).get("dataset", {})
    generator = data.get("generator") or {}
    made = ", ".join(f"{k} {v}" for k, v in generator.items() if isinstance(v, (str, int, float)))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    links = (['<a href="#comparison">side by side</a>'] if len(records) > 1 else []) + [
        f'<a href="#model-{_e(_slug(n))}">{_e(n)}</a>' for n in records]
    return "\n".join([
        "<h1>Held-out evaluation</h1>",
        f'<p class="meta">{data.get("cases", "?")} scans of {_e(data.get("path", "?"))}'
        + (f" ({_e(made)})" if made else "") + f"; {len(records)} model(s); written {when}.</p>",
        "<p>Each scan is classified densely, the abdomen fitted and its circumference (AC) "
        "measured, and the plane judged (stomach bubble and umbilical vein inside the "
        "abdomen). Accuracies are per pixel inside the fan; AC errors against the true "
        "abdomen's perimeter; plane acceptance against the true verdict.</p>",
        "<nav>" + " ".join(links) + "</nav>"])


# --------------------------------------------------------------------------- the page

def read_records(out: pathlib.Path, models: list[str]) -> dict[str, dict]:
    """``OUT/<model>.json`` of each model; ValueError names a missing or broken file."""
    records = {}
    for name in models:
        path = out / f"{name}.json"
        try:
            records[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: missing; evaluation.evaluate(model, data, out) writes it") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    return records


def write(out: str | os.PathLike, models: list[str],
          progress: Callable | None = None) -> pathlib.Path:
    """Write ``OUT/report.html`` and its figures for ``models`` (names of ``OUT/<model>.json``)."""
    out = pathlib.Path(out)
    if not models:
        raise ValueError("no models to report")
    records = read_records(out, models)
    sections = []
    for name, record in (progress(records.items()) if progress else records.items()):
        files = {key: _save(out, f"{key}_{_slug(name)}.png", fig)
                 for key, fig in model_figures(name, record).items()}
        sections.append(model_section(name, record, files, _diagram(out, name, record)))
    summaries = {name: r["summary"] for name, r in records.items()}
    if len(records) > 1:
        files = [_save(out, "comparison.png", figures.comparison(summaries)),
                 _save(out, "class_accuracy_comparison.png", figures.class_accuracy_bars(
                     {n: s["per_class_accuracy"] for n, s in summaries.items()}))]
        sections.insert(0, comparison_section(summaries, files))
    page = "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      "<title>fetal-biometry: held-out evaluation</title>",
                      f"<style>{STYLE}</style></head><body><main>", _header(records),
                      *sections, "</main></body></html>", ""])
    return atomic.write_text(out / "report.html", page)
