"""Every picture of the project: overlays on scans, plots, net diagrams.

Two kinds of function, both pure (nothing is written; callers write the files):

- **on scans**, arrays in, RGB ``uint8`` arrays out: :func:`overlay` (label colours),
  :func:`class_overlay` (classifier classes with a legend), :func:`draw_measurement` (the fitted
  abdomen, boundary points, landmarks, AC), :func:`draw_plane` (a head's or femur's
  measurement, or the abdomen's), :func:`beam_picture` (beam directions),
  :func:`augmentation_sheet` (a scan and its augmented versions); :func:`png` encodes one;
- **plots**, numbers in, :class:`matplotlib.figure.Figure` out: :func:`contact_sheet`,
  :func:`training_plot`, and the evaluation report's :func:`bland_altman`,
  :func:`agreement_scatter`, :func:`confusion_heatmap`, :func:`class_accuracy_bars`,
  :func:`plane_acceptance` and :func:`comparison`, and the experiments' :func:`learning_curve`;
  :func:`figure_png` renders one.

Figures are built on :class:`~matplotlib.figure.Figure` directly, not pyplot, so no global state
or backend is touched. :func:`net_diagram` is the exception that writes: Caffe's own
``caffe.draw`` (pydot + graphviz) renders a net to a PNG file.
"""
from __future__ import annotations

import io
import math
import os
import pathlib
import shutil
import textwrap
from typing import TYPE_CHECKING, Mapping, Sequence

import cv2
import numpy as np

from fetal_biometry import atomic
from fetal_biometry.evaluation.metrics import PLANE_OUTCOMES
from fetal_biometry.io.sequences import VideoWriter
from fetal_biometry.labels import CLASSES, CLASSIFIER_CLASSES, COLOURS, DATASET_CLASSES, STOMACH, VEIN
from fetal_biometry.measure.ellipse import Ellipse, ellipse_points

if TYPE_CHECKING:
    from fetal_biometry.measure.sweeps import SweepResult

DPI = 120  # about one screen pixel per image pixel in the contact sheet
ARROW_STEP = 24  # px between arrows on the beam picture
TRUE_COLOUR, MEASURED_COLOUR = "#222222", "#1f77b4"


def _name(cls: str) -> str:
    return cls.replace("_", " ")


# --------------------------------------------------------------------------- on scans

def _rgb(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 copy of a gray or RGB image."""
    rgb = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    return np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3].copy()


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 scan with every class of the table coloured over it (background left gray).

    The patch classifier's classes 1-4 share these values, so its label maps use it too.
    """
    rgb = _rgb(image).astype(np.float32)
    for value, colour in COLOURS.items():
        mask = labels == value
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.array(colour, np.float32)
    return rgb.clip(0, 255).astype(np.uint8)


def class_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45,
                  legend: bool = True) -> np.ndarray:
    """Classifier classes over the gray scan, like the source's results figure (RGB uint8); a
    map with head or femur classes lists the classes it shows instead."""
    rgb = overlay(image, labels, alpha)
    if legend:
        shown = [int(v) for v in np.unique(labels) if v in COLOURS]
        named = (shown if any(v >= len(CLASSES) for v in shown)
                 else range(1, len(CLASSIFIER_CLASSES)))
        for row, cls in enumerate(named):
            y = 6 + 12 * row
            cv2.rectangle(rgb, (4, y), (12, y + 8), COLOURS[cls], -1)
            cv2.putText(rgb, _name(DATASET_CLASSES[cls]), (16, y + 8),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


_INLIER, _OUTLIER, _ELLIPSE = (0, 230, 0), (255, 60, 60), (0, 220, 255)


def draw_ellipse(rgb: np.ndarray, ellipse: Ellipse, colour=_ELLIPSE) -> np.ndarray:
    """Draw ``ellipse`` (anti-aliased, sub-pixel) into the RGB array ``rgb`` in place."""
    outline = np.round(ellipse_points(ellipse) * 16).astype(np.int32)
    cv2.polylines(rgb, [outline], True, colour, 1, cv2.LINE_AA, shift=4)
    return rgb


def draw_measurement(image: np.ndarray, measurement) -> np.ndarray:
    """RGB copy of a scan with a :class:`~fetal_biometry.measure.biometry.Measurement` drawn on it.

    The fitted ellipse, the boundary points (green where they support the fit, red where not),
    the stomach and vein landmarks, and the AC with the plane verdict or its reasons.
    """
    rgb = _rgb(image)
    if measurement.ellipse is not None:
        draw_ellipse(rgb, measurement.ellipse)
    # Points over the ellipse: green arcs are where the fit is supported.
    for (x, y), inlier in zip(measurement.points, measurement.inliers):
        rgb[int(round(y)), int(round(x))] = _INLIER if inlier else _OUTLIER
    for landmark, colour in ((measurement.stomach, COLOURS[STOMACH]), (measurement.vein, COLOURS[VEIN])):
        if landmark is not None:
            centre = (int(round(landmark.x)), int(round(landmark.y)))
            cv2.drawMarker(rgb, centre, colour, cv2.MARKER_CROSS, 8, 1)
    lines = [f"AC {measurement.ac_mm:.1f} mm" if measurement.ac_mm is not None else "AC -"]
    lines += ["plane accepted"] if measurement.accepted else list(measurement.reasons)
    for row, text in enumerate(lines):
        cv2.putText(rgb, text, (4, rgb.shape[0] - 6 - 12 * (len(lines) - 1 - row)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


def _segment(rgb: np.ndarray, start, end, colour) -> None:
    """A sub-pixel line from ``start`` to ``end`` (x, y) with a small bar at each end."""
    a, b = (np.round(np.asarray(p, float) * 16).astype(np.int32) for p in (start, end))
    cv2.line(rgb, tuple(a.tolist()), tuple(b.tolist()), colour, 1, cv2.LINE_AA, shift=4)
    for p in (start, end):
        cv2.drawMarker(rgb, (int(round(p[0])), int(round(p[1]))), colour, cv2.MARKER_CROSS, 6, 1)


def draw_plane(image: np.ndarray, result) -> np.ndarray:
    """RGB copy of a scan with what :func:`fetal_biometry.measure.plane.measure_plane` found: an
    abdomen as :func:`draw_measurement`; a head's fitted outer skull ellipse with its OFD (long
    axis) and BPD (short axis) as lines; a femur's length between its two ends. The values and
    the plane verdict (or its reasons) are written below."""
    m = result.detail
    if result.kind == "abdomen":
        return draw_measurement(image, m)
    rgb = _rgb(image)
    lines = [f"{result.kind} plane"]
    if result.kind == "head" and m.fit is not None:
        e = m.fit
        draw_ellipse(rgb, e)
        c, s = math.cos(math.radians(e.angle)), math.sin(math.radians(e.angle))
        for (dx, dy), r in (((c, s), e.a), ((-s, c), e.b)):
            _segment(rgb, (e.cx - r * dx, e.cy - r * dy), (e.cx + r * dx, e.cy + r * dy), _ELLIPSE)
    if result.kind == "femur" and m.ends is not None:
        _segment(rgb, m.ends[0], m.ends[1], _ELLIPSE)
    values = "  ".join(f"{k} {v:.1f}" for k, v in result.measurements.items())
    lines += [values + " mm"] if values else []
    lines += ["plane accepted"] if result.accepted else list(result.reasons)[:3]
    for row, text in enumerate(lines):
        cv2.putText(rgb, text, (4, rgb.shape[0] - 6 - 12 * (len(lines) - 1 - row)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


def caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` written in its top right corner (in place)."""
    (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    cv2.putText(rgb, text, (rgb.shape[1] - width - 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


def beam_picture(gray: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """RGB picture of beam directions: hue from the beam angle (-90..90 degrees over half the
    hue circle), brightness from the image, arrows along the beams every :data:`ARROW_STEP` px."""
    inside = ~np.isnan(directions[..., 0])
    dx, dy = np.nan_to_num(directions[..., 0]), np.nan_to_num(directions[..., 1], nan=1.0)
    angle = np.degrees(np.arctan2(dx, dy))
    hsv = np.zeros((*gray.shape, 3), np.uint8)
    hsv[..., 0] = np.clip((angle + 90) / 180 * 179, 0, 179).astype(np.uint8)
    hsv[..., 1] = np.where(inside, 200, 0)
    hsv[..., 2] = np.clip(60 + 0.8 * gray.astype(np.float32), 0, 255).astype(np.uint8)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    out[~inside] = gray[~inside, None]
    half = ARROW_STEP // 2
    for y in range(half, gray.shape[0], ARROW_STEP):
        for x in range(half, gray.shape[1], ARROW_STEP):
            if inside[y, x]:
                dx, dy = directions[y, x] * 0.8 * half
                cv2.arrowedLine(out, (x, y), (int(round(x + dx)), int(round(y + dy))),
                                (255, 255, 255), 1, cv2.LINE_AA, tipLength=0.35)
    return out


def augmentation_sheet(image: np.ndarray, labels: np.ndarray, directions: np.ndarray,
                       count: int = 4, seed: int = 0) -> np.ndarray:
    """RGB picture of a scan and ``count`` augmented versions of it (:mod:`fetal_biometry.patches.augment`,
    its default ranges, drawn from ``seed``): labels over the image above, beam directions below."""
    from fetal_biometry.patches import augment

    rng = np.random.default_rng(seed)
    columns = []
    for index in range(count + 1):
        transform = augment.Transform() if index == 0 else augment.draw(rng)
        gray, classes, beams = augment.apply(image, labels, directions, transform, rng)
        top = caption(overlay(gray, classes), "original" if index == 0 else
                      f"{transform.rotation_deg:+.0f} deg x{transform.scale:.2f}")
        bottom = caption(beam_picture(gray, beams), "" if index == 0 else
                         f"gamma {transform.gamma:.2f} gain {transform.gain_db:+.1f} dB")
        columns.append(np.vstack([top, bottom]))
    return np.hstack(columns)


_MEASURED, _ACCEPTED = (255, 140, 0), (0, 230, 0)


def sweep_frame(frame: np.ndarray, labels: np.ndarray | None, index: int,
                score: float | None) -> np.ndarray:
    """One frame of a sweep's overlay video as it is classified: classes, frame, its score
    (labels and score None: a frame the segmenter's first pass skips, shown plain)."""
    if labels is None:
        rgb, text = _rgb(frame), f"frame {index}"
    else:
        rgb = class_overlay(frame, labels, legend=False)
        text = f"frame {index}  score {score:.2f}"
    cv2.putText(rgb, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (220, 220, 220), 1, cv2.LINE_AA)
    return rgb


def sweep_measured(rgb: np.ndarray, measurement, plane_score: float, chosen: bool) -> np.ndarray:
    """A measured sweep frame's picture (in place): its ellipse (green: accepted plane) and its
    plane score, or, when chosen, its AC."""
    if measurement.ellipse is not None:
        draw_ellipse(rgb, measurement.ellipse, _ACCEPTED if measurement.accepted else _MEASURED)
    text = (f"CHOSEN  AC {measurement.ac_mm:.0f} mm" + ("" if measurement.accepted else " (plane not accepted)")
            if chosen else f"plane score {plane_score:.2f}")
    cv2.putText(rgb, text, (4, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


# --------------------------------------------------------------------------- plots

def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure  # imported here: only plots need matplotlib

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def figure_png(fig, dpi: int = DPI) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _case_title(case) -> str:
    bio = case.biometry
    age = "" if bio.gestational_age_weeks is None else f", GA {bio.gestational_age_weeks:.1f} wk"
    verdict = "plane OK" if bio.plane_acceptable else bio.plane_reason
    if bio.structure == "femur":
        size = f"FL {bio.measurements['FL']:.0f} mm" if bio.measurements else "femur"
    else:
        size = f"{'AC' if bio.structure == 'abdomen' else 'HC'} {bio.circumference_mm:.0f} mm"
    return f"{case.name}: {size}{age}\n{textwrap.shorten(verdict, 75)}"


def dataset_sheet(path, count: int = 8) -> bytes:
    """PNG bytes of :func:`contact_sheet` for the first ``count`` cases of the dataset at ``path``."""
    from fetal_biometry.io import dataset

    opened = dataset.open(path)
    return figure_png(contact_sheet([opened.read(name) for name in opened.cases[:count]]))


def contact_sheet(cases: Sequence, columns: int = 2):
    """Scans (:class:`~fetal_biometry.io.dataset.Case`) beside their label overlay and abdomen
    ellipse, with a colour legend of the class table along the bottom."""
    from matplotlib.patches import Ellipse as EllipsePatch, Patch

    if not cases:
        raise ValueError("no cases to draw")
    rows = math.ceil(len(cases) / columns)
    fig = _figure(4.4 * columns, 2.7 * rows + 0.5, layout=None)
    axes = fig.subplots(rows, 2 * columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, case in enumerate(cases):
        left, right = axes[i // columns, 2 * (i % columns)], axes[i // columns, 2 * (i % columns) + 1]
        left.imshow(case.image, cmap="gray", vmin=0, vmax=255)
        left.set_title(_case_title(case), fontsize=6.5, loc="left")
        right.imshow(overlay(case.image, case.labels))
        e = case.biometry.ellipse
        if e is not None:  # a femur plane has none
            right.add_patch(EllipsePatch((e.cx, e.cy), 2 * e.a, 2 * e.b, angle=e.angle, fill=False,
                                         color="white", linewidth=0.7, linestyle="--"))
    handles = [Patch(color=np.array(COLOURS[v]) / 255, label=_name(DATASET_CLASSES[v])) for v in COLOURS]
    handles.append(Patch(facecolor="white", edgecolor="black", linestyle="--",
                         label="measured ellipse (AC or HC)"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (2.7 * rows + 0.5), 1, 1), pad=0.3)
    return fig


def training_plot(history: list[dict]):
    """Loss (per iteration, smoothed, validation) and validation accuracy against iterations."""
    steps = [h for h in history if "loss" in h and h.get("phase") != "val"]
    vals = [h for h in history if h.get("phase") == "val"]
    fig = _figure(10, 3.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    if steps:
        iters = np.array([h["iter"] for h in steps])
        losses = np.array([h["loss"] for h in steps])
        ax_loss.plot(iters, losses, lw=0.5, alpha=0.4, label="iteration")
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_loss.plot(iters[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
    if vals and "loss" in vals[0]:
        ax_loss.plot([v["iter"] for v in vals], [v["loss"] for v in vals], "o-", label="validation")
    ax_loss.set(xlabel="iteration", ylabel="loss", yscale="log", title="loss")
    ax_loss.legend(fontsize=8)
    if vals and "accuracy" in vals[0]:
        ax_acc.plot([v["iter"] for v in vals], [v["accuracy"] for v in vals], "o-")
    ax_acc.set(xlabel="iteration", ylabel="accuracy", title="validation accuracy")
    ax_acc.grid(alpha=0.3)
    return fig


def _nothing(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555")


def _limits(ax, agreement: Mapping, unit: str, key: str) -> None:
    """Bias and 95 % limits of agreement as labelled horizontal lines."""
    bias, (low, high) = agreement[f"bias_{key}"], agreement[f"loa_{key}"]
    for value, label, style in ((high, "+1.96 SD", "--"), (bias, "bias", "-"), (low, "-1.96 SD", "--")):
        ax.axhline(value, color="#c0392b" if label == "bias" else "#7f8c8d", ls=style, lw=1)
        ax.annotate(f"{label} {value:+.2f} {unit}", (1, value), xycoords=("axes fraction", "data"),
                    xytext=(-3, 2), textcoords="offset points", ha="right", va="bottom", fontsize=7)
    ax.axhline(0, color="black", lw=0.5)


def centile_charts(panel: Mapping):
    """Each charted measurement of a panel (:func:`fetal_biometry.measure.growth.panel`) on its
    INTERGROWTH-21st chart: the 3rd, 10th, 50th, 90th and 97th centiles over the standard's
    weeks, the measurement drawn at the gestational age given (none without one: a centile needs
    it); the estimated fetal weight too when its formula is the one its standard was built on."""
    from fetal_biometry.measure import growth

    charts = []  # (name, unit, weeks, centile line function, entry)
    for key, entry in panel["measurements"].items():
        if key in growth.STANDARDS:
            charts.append((key, "mm", growth.GA_RANGE_WEEKS,
                           lambda c, w, key=key: growth.value_at_centile(key, c, w), entry))
    efw = panel.get("efw")
    if efw and efw["formula"] == growth.EFW_CHARTED_FORMULA:
        charts.append(("EFW", "g", growth.EFW_RANGE_WEEKS, growth.efw_at_centile,
                       {"mm": efw["grams"], "centile": efw["centile"]}))
    if not charts:
        raise ValueError("nothing to chart: no measurement with an INTERGROWTH-21st standard")
    fig = _figure(3.2 * len(charts), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(charts)))
    for ax, (name, unit, span, line, entry) in zip(axes, charts):
        weeks = np.linspace(*span, 105)
        for c in growth.CHART_CENTILES:
            ax.plot(weeks, [line(c, w) for w in weeks], color="0.2",
                    lw=1.4 if c == 50 else 0.7, ls="-" if c in (3, 50, 97) else "--")
            ax.annotate(f"{c}", (weeks[-1], line(c, weeks[-1])), fontsize=6,
                        xytext=(2, 0), textcoords="offset points", va="center")
        value = f"{entry['mm']:.0f} g" if unit == "g" else f"{entry['mm']:.1f} mm"
        if entry["centile"] is not None:
            ax.plot([panel["ga_weeks"]], [entry["mm"]], "o", color="tab:red", ms=5)
            ax.set_title(f"{name} {value}: centile {entry['centile']:.0f}", fontsize=8)
        else:
            ax.set_title(f"{name} {value}: not charted", fontsize=8)
        ax.set(xlabel="gestational age (weeks)", ylabel=f"{name} ({unit})")
        ax.grid(alpha=0.3)
    return fig


def evaluation_centiles(points: Mapping[str, Sequence[tuple[float, float, float]]]):
    """An evaluation's measurements on their INTERGROWTH-21st charts (3rd-97th centile lines):
    per measurement key, ``(gestational age, measured, true)`` of each case, the truth as grey
    rings and the net's values as dots at the case's age."""
    from fetal_biometry.measure import growth

    keys = [k for k in points if k in growth.STANDARDS and len(points[k])]
    if not keys:
        raise ValueError("nothing to chart: no measurement with an INTERGROWTH-21st standard")
    fig = _figure(3.2 * len(keys), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    weeks = np.linspace(*growth.GA_RANGE_WEEKS, 105)
    for ax, key in zip(axes, keys):
        for c in growth.CHART_CENTILES:
            ax.plot(weeks, [growth.value_at_centile(key, c, w) for w in weeks], color="0.2",
                    lw=1.4 if c == 50 else 0.7, ls="-" if c in (3, 50, 97) else "--")
        ga, measured, true = np.asarray(points[key], float).T
        ax.plot(ga, true, "o", mfc="none", color="0.5", ms=5, label="truth")
        ax.plot(ga, measured, ".", color="tab:red", ms=4, label="measured")
        ax.set_title(f"{key}: {len(ga)} planes", fontsize=8)
        ax.set(xlabel="gestational age (weeks)", ylabel=f"{key} (mm)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def bland_altman(measured: np.ndarray, true: np.ndarray, agreement: Mapping | None,
                 title: str = ""):
    """Bland-Altman plot of measured against true AC: difference against mean, in mm and in %.

    ``agreement`` holds ``bias_mm``, ``loa_mm`` (low, high), ``bias_percent``, ``loa_percent``
    (see :func:`fetal_biometry.evaluation.metrics.agreement`); drawn as the bias and the 95 % limits.
    The percent panel is the difference as a share of the pair's mean, Bland and Altman's own
    form for errors that grow with size.
    """
    measured, true = np.asarray(measured, float), np.asarray(true, float)
    mean, difference = (measured + true) / 2, measured - true
    fig = _figure(8, 3.4)
    panels = fig.subplots(1, 2, sharex=True)
    for ax, values, unit, key in ((panels[0], difference, "mm", "mm"),
                                  (panels[1], 100 * difference / np.where(mean > 0, mean, np.nan),
                                   "%", "percent")):
        ax.scatter(mean, values, s=16, color=MEASURED_COLOUR, alpha=0.8, edgecolor="none")
        if agreement is not None:
            _limits(ax, agreement, unit, key)
        ax.set(xlabel="mean of measured and true AC (mm)",
               ylabel="measured - true (mm)" if key == "mm" else "(measured - true) / mean (%)")
        ax.grid(alpha=0.3)
        if not len(measured):
            _nothing(ax, "no AC measured")
    fig.suptitle(f"{title}Bland-Altman, n = {len(measured)} measured", fontsize=10)
    return fig


def agreement_scatter(measured: np.ndarray, true: np.ndarray, title: str = ""):
    """Measured against true AC (mm) with the identity line."""
    measured, true = np.asarray(measured, float), np.asarray(true, float)
    fig = _figure(3.8, 3.4)
    ax = fig.subplots()
    values = np.concatenate([measured, true]) if len(measured) else np.array([0.0, 1.0])
    span = (values.min() - 10, values.max() + 10)
    ax.plot(span, span, color=TRUE_COLOUR, lw=0.8, label="identity")
    ax.scatter(true, measured, s=16, color=MEASURED_COLOUR, alpha=0.8, edgecolor="none",
               label="scans")
    ax.set(xlim=span, ylim=span, aspect="equal", xlabel="true AC (mm)", ylabel="measured AC (mm)",
           title=f"{title}measured vs true AC")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    if not len(measured):
        _nothing(ax, "no AC measured")
    return fig


def confusion_heatmap(confusion: np.ndarray, classes: Sequence[str] = CLASSIFIER_CLASSES,
                      title: str = ""):
    """The confusion matrix normalised per true class (rows sum to 1), shares written in."""
    confusion = np.asarray(confusion, float)
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig = _figure(4.6, 3.9)
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = [_name(c) for c in classes]
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for (row, col), share in np.ndenumerate(shares):
        ax.text(col, row, f"{share:.2f}", ha="center", va="center", fontsize=8,
                color="white" if share > 0.6 else "black")
    ax.set(xlabel="classified as", ylabel="true class")
    ax.set_title(f"{title}confusion (share of true-class pixels)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def class_accuracy_bars(per_model: Mapping[str, Mapping[str, float]], title: str = ""):
    """Per-class accuracy as bars, one group per class and one bar per model."""
    classes = list(next(iter(per_model.values())))
    fig = _figure(max(4.6, 1.2 * len(classes) + 0.6 * len(per_model)), 3.4)
    ax = fig.subplots()
    width = 0.8 / len(per_model)
    for index, (model, accuracy) in enumerate(per_model.items()):
        xs = np.arange(len(classes)) + (index - (len(per_model) - 1) / 2) * width
        bars = ax.bar(xs, [accuracy[c] for c in classes], width, label=model)
        ax.bar_label(bars, fmt="%.2f", fontsize=6 if len(per_model) > 1 else 8, padding=1)
    ax.set_xticks(range(len(classes)), [_name(c) for c in classes], fontsize=8)
    ax.set(ylim=(0, 1.25 if len(per_model) > 1 else 1.1), ylabel="accuracy (share of true-class pixels)")
    ax.set_title(f"{title}per-class accuracy", fontsize=10)
    if len(per_model) > 1:
        ax.legend(fontsize=7, ncol=len(per_model), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return fig




def plane_acceptance(outcomes: Mapping[str, int], reasons: Mapping[str, int], title: str = ""):
    """Plane-acceptance counts (true/false accept/reject) beside the rejection reasons tallied."""
    fig = _figure(8, max(2.8, 0.9 + 0.32 * len(reasons)))
    counts_ax, reasons_ax = fig.subplots(1, 2, width_ratios=(1, 1.6))
    colours = ("#2e8b57", "#c0392b", "#2e8b57", "#c0392b")
    bars = counts_ax.bar(range(4), [outcomes.get(k, 0) for k in PLANE_OUTCOMES], color=colours)
    counts_ax.bar_label(bars, fontsize=8)
    counts_ax.set_xticks(range(4), [k.replace(" ", "\n") for k in PLANE_OUTCOMES], fontsize=8)
    counts_ax.set(ylabel="scans")
    counts_ax.set_title(f"{title}plane verdicts", fontsize=10)
    counts_ax.margins(y=0.15)
    if reasons:
        names = list(reasons)[::-1]
        bars = reasons_ax.barh(range(len(names)), [reasons[n] for n in names], color="#7f8c8d")
        reasons_ax.bar_label(bars, fontsize=8, padding=2)
        reasons_ax.set_yticks(range(len(names)), names, fontsize=7)
        reasons_ax.margins(x=0.15)
    else:
        reasons_ax.text(0.5, 0.5, "no plane rejected", ha="center", va="center",
                        transform=reasons_ax.transAxes)
        reasons_ax.set_yticks([])
    reasons_ax.set(xlabel="scans")
    reasons_ax.set_title("reasons for rejection (measured)", fontsize=10)
    return fig


def comparison(summaries: Mapping[str, Mapping]):
    """Models side by side: AC bias with 95 % limits (mm), median |AC error|, plane outcomes."""
    models = list(summaries)
    fig = _figure(10, 3.2)
    bias_ax, error_ax, plane_ax = fig.subplots(1, 3)
    ys = np.arange(len(models))[::-1]
    for y, model in zip(ys, models):
        agreement = summaries[model].get("ac_agreement")
        if agreement is not None:
            low, high = agreement["loa_mm"]
            bias_ax.plot([low, high], [y, y], color="#7f8c8d", lw=2)
            bias_ax.plot(agreement["bias_mm"], y, "o", color="#c0392b")
            bias_ax.annotate(f"{agreement['bias_mm']:+.1f} [{low:+.1f}, {high:+.1f}]", (high, y),
                             xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        else:
            bias_ax.text(0.5, y, "fewer than 2 ACs", transform=bias_ax.get_yaxis_transform(),
                         ha="center", va="center", fontsize=7, color="#555")
    bias_ax.axvline(0, color="black", lw=0.5)
    bias_ax.set_yticks(ys, models)
    bias_ax.set_ylim(-0.6, len(models) - 0.4)
    bias_ax.margins(x=0.45)
    bias_ax.set(xlabel="measured - true AC (mm)")
    bias_ax.set_title("bias and 95 % limits of agreement", fontsize=10)
    errors = [summaries[m]["ac_median_error_percent"] or 0.0 for m in models]
    bars = error_ax.bar(models, errors, color=MEASURED_COLOUR)
    error_ax.bar_label(bars, fmt="%.2f", fontsize=8)
    error_ax.margins(y=0.15)
    error_ax.set(ylabel="median |AC error| (%)")
    error_ax.set_title("AC error", fontsize=10)
    width = 0.8 / 4
    for index, outcome in enumerate(PLANE_OUTCOMES):
        counts = [summaries[m].get("plane_outcomes", {}).get(outcome, 0) for m in models]
        plane_ax.bar(np.arange(len(models)) + (index - 1.5) * width, counts, width, label=outcome)
    plane_ax.set_xticks(range(len(models)), models)
    plane_ax.set(ylabel="scans")
    plane_ax.set_title("plane verdicts", fontsize=10)
    highest = max([1] + [max(s.get("plane_outcomes", {}).values(), default=0) for s in summaries.values()])
    plane_ax.set_ylim(0, 1.4 * highest)  # room for the legend
    plane_ax.legend(fontsize=6, ncol=2, loc="upper center")
    for ax in (bias_ax, error_ax, plane_ax):
        ax.grid(alpha=0.3, axis="x" if ax is bias_ax else "y")
    return fig


def learning_curve(curves: Mapping[str, Mapping[str, Mapping]], panels: Sequence[tuple[str, str]],
                   styles: Mapping[str, tuple[str, str]]):
    """One panel per metric against the number of training scans (log axis): a line per beam
    encoding (colour) and evaluation set (line style) with a band of +- one standard deviation.

    ``curves[set][encoding]`` is ``{"scans": [n, ...], metric: {"mean": [...], "sd": [...]}}``
    (a mean or sd may be None: no value, or a single seed); ``panels`` are ``(metric, title)``;
    ``styles[set]`` is ``(matplotlib line style, legend name)``.
    """
    from matplotlib.lines import Line2D

    fig = _figure(3.3 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    encodings = list(dict.fromkeys(e for per_set in curves.values() for e in per_set))
    colours = {e: f"C{i}" for i, e in enumerate(encodings)}
    scans = sorted({n for per_set in curves.values() for c in per_set.values() for n in c["scans"]})
    for ax, (metric, title) in zip(axes, panels):
        for name, per_set in curves.items():
            for encoding, curve in per_set.items():
                x = np.asarray(curve["scans"], float)
                mean = np.array([np.nan if m is None else m for m in curve[metric]["mean"]], float)
                sd = np.array([0.0 if d is None else d for d in curve[metric]["sd"]], float)
                ax.plot(x, mean, styles[name][0], color=colours[encoding], marker="o", ms=3, lw=1.4)
                ax.fill_between(x, mean - sd, mean + sd, color=colours[encoding], alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_xticks(scans, [str(n) for n in scans])
        ax.minorticks_off()
        ax.set(xlabel="training scans")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[e], lw=2, label=e) for e in encodings]
    handles += [Line2D([], [], color="#444", ls=styles[n][0], label=styles[n][1]) for n in curves]
    axes[-1].legend(handles=handles, fontsize=7, loc="best")
    return fig


# --------------------------------------------------------------------------- net diagrams

def net_diagram(net, out: str | os.PathLike, rankdir: str = "LR") -> pathlib.Path:
    """Draw a Caffe net with ``caffe.draw`` (pydot and graphviz) into the PNG ``out``.

    ``net`` is a ``NetParameter`` or the path of a net prototxt. Written atomically; a clear
    error when pydot or graphviz's ``dot`` is missing.
    """
    from google.protobuf import text_format

    from fetal_biometry.caffe_env import proto

    if not hasattr(net, "layer"):  # a path, not a NetParameter
        path = pathlib.Path(net)
        try:
            net = text_format.Parse(path.read_text(), proto().NetParameter())
        except (OSError, text_format.ParseError) as error:
            raise ValueError(f"{path}: not a readable net prototxt: {error}") from error
    if shutil.which("dot") is None:
        raise RuntimeError("graphviz's `dot` is not installed: apt-get install graphviz "
                           "(tools/bootstrap.sh installs it)")
    try:
        import caffe.draw  # needs pydot
    except ImportError as error:
        raise RuntimeError(f"caffe.draw cannot run ({error}): pip install the pinned pydot "
                           "from requirements.txt") from error
    data = caffe.draw.draw_net(net, rankdir, "png")
    return atomic.write_bytes(pathlib.Path(out), data)


def sweep_scores(record: dict, title: str = ""):
    """The landmark score over a sweep's frames, the measured frames' plane scores (green:
    accepted) and the chosen frame (:func:`fetal_biometry.measure.sweeps.analyse`'s record)."""
    frames = record["frames"]
    fig = _figure(8, 3)
    ax = fig.add_subplot()
    frames = [f for f in frames if f.get("score") is not None]  # a segmenter's skipped frames
    x = [f["frame"] for f in frames]
    ax.plot(x, [f["score"] for f in frames], color="0.3", lw=1, label="frame score")
    ax.plot(x, [f["stomach"] for f in frames], color=np.array(COLOURS[STOMACH]) / 255, lw=0.8, label="stomach")
    ax.plot(x, [f["vein"] for f in frames], color=np.array(COLOURS[VEIN]) / 255, lw=0.8, label="vein")
    measured = [f for f in frames if f.get("measured")]
    ax.scatter([f["frame"] for f in measured], [f["plane_score"] for f in measured],
               c=["tab:green" if f["accepted"] else "tab:orange" for f in measured], zorder=3,
               s=18, label="plane score (green: accepted)")
    if record["best_frame"] >= 0:
        ax.axvline(record["best_frame"], color="tab:blue", ls="--",
                   label=f"chosen: frame {record['best_frame']}, AC {record['ac_mm']:.0f} mm")
    ax.set(xlabel="frame", ylabel="score", ylim=(0, 1.05), title=title or "plane scores")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    return fig


def annotate_video(draft: str | os.PathLike, out: str | os.PathLike, result: SweepResult,
                   fps: float) -> None:
    """Copy the classified frames of ``draft`` into ``out``, the measured frames with their
    ellipse and the chosen one with its AC; ``draft`` is removed."""
    source = cv2.VideoCapture(str(draft))
    measured = {c.index: c for c in result.candidates}
    chosen = result.chosen.index if result.chosen else None
    writer = None
    try:
        index = 0
        while True:
            ok, bgr = source.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if writer is None:
                writer = VideoWriter(out, fps, rgb.shape[:2])
            if index in measured:
                c = measured[index]
                rgb = sweep_measured(rgb, c.measured, c.plane["plane_score"], index == chosen)
            writer.write(rgb)
            index += 1
    except BaseException:
        if writer is not None:
            writer.close(keep=False)
        raise
    finally:
        source.release()
        pathlib.Path(draft).unlink(missing_ok=True)
    if writer is not None:
        writer.close()
