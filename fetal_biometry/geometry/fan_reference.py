"""Real scans with hand-checked fans, and how close an estimated fan comes to them.

The real set (``tests/data/real/manifest.json``) lists ultrasound images taken from public
packages on the registries (PyPI), each with its source package, version, licence and a
reference fan checked by hand on the image: two points on each side edge, picked on
magnified crops (``left_edge``, ``right_edge``, image pixels). The probe kind says how the
edges are judged (:func:`score`):

``sector`` / ``convex``
    The edges meet at the apex (a convex probe's is virtual, above the image): the estimate
    must be convex, its apex within ``max(20 px, 3 % of the width)`` of where the reference
    edges meet and each edge angle within 3 degrees.
``linear``
    Parallel edges: each reference edge point within 10 px of the estimated side edge.
``trapezoid``
    A linear probe's virtual-convex (trapezoid) display: an apex far above the image, so the
    edges are judged as a linear probe's (10 px), and their angles within 3 degrees.

Images whose licence lets them be copied are in ``tests/data/real/``; the others are fetched
into a cache by ``benchmarks/fetch_real_fans.py`` (the package downloaded with pip, its hash
checked, the image taken out) and are absent until then. Negatives (text panels, blank frames)
are rendered by :func:`negatives`, or fetched like the scans where a package has one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import cv2
import numpy as np

from fetal_biometry.geometry import probe as geom

APEX_PX, APEX_SHARE = 20.0, 0.03  # apex tolerance: the larger of these (px, share of width)
EDGE_DEG = 3.0
SIDE_PX = 10.0  # a linear (or trapezoid) edge: reference points this close to the estimate
KINDS = ("sector", "convex", "linear", "trapezoid")
CACHE_ENV = "FETAL_REAL_CACHE"


def default_cache() -> pathlib.Path:
    """Where fetched real images are kept: $FETAL_REAL_CACHE, else ~/.cache/fetal-biometry/real."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or
                        pathlib.Path.home() / ".cache" / "fetal-biometry" / "real")


@dataclasses.dataclass(frozen=True)
class Reference:
    """One image of the real set: its name, source, kind and hand-checked side edges (or
    ``kind == "negative"`` with no edges)."""

    name: str
    kind: str
    source: str  # package and version (or "rendered")
    licence: str
    path: pathlib.Path  # where the image is (committed) or will be (fetched)
    left_edge: tuple[tuple[float, float], tuple[float, float]] | None = None
    right_edge: tuple[tuple[float, float], tuple[float, float]] | None = None
    group: str = ""  # variants of one scan (an overlay drawn on it) share a group
    split: str = ""  # "choose": may be used to choose rules; "report": only to report errors
    note: str = ""

    def angles(self) -> tuple[float, float]:
        """Reference edge angles, degrees from straight down (negative to the left)."""
        return _angle(self.left_edge), _angle(self.right_edge)

    def apex(self) -> tuple[float, float]:
        """Where the reference edges meet."""
        return _meet(self.left_edge, self.right_edge)


def _angle(edge) -> float:
    (x0, y0), (x1, y1) = sorted(edge, key=lambda p: p[1])
    return math.degrees(math.atan2(x1 - x0, y1 - y0))


def _meet(left, right) -> tuple[float, float]:
    p, q = np.asarray(left, float)
    s, t = np.asarray(right, float)
    along = np.linalg.solve(np.stack([q - p, s - t], axis=1), s - p)[0]
    return tuple(float(v) for v in p + along * (q - p))


def read_manifest(path: str | os.PathLike, cache: pathlib.Path | None = None) -> list[Reference]:
    """The references of a real-set manifest; fetched images are looked for in ``cache``."""
    path = pathlib.Path(path)
    data = json.loads(path.read_text())
    cache = default_cache() if cache is None else cache
    packages = data["packages"]
    found = []
    for item in data["images"] + data.get("negatives", []):
        package = packages[item["package"]]
        where = path.parent / item["file"] if "file" in item else cache / f"{item['name']}.png"
        edges = {key: tuple(tuple(map(float, point)) for point in item[key])
                 for key in ("left_edge", "right_edge") if key in item}
        found.append(Reference(item["name"], item["kind"], item["package"], package["licence"],
                               where, **edges, group=item.get("group", item["name"]),
                               split=item.get("split", ""), note=item.get("note", "")))
    return found


def read_image(reference: Reference) -> np.ndarray:
    """The reference's image as RGB uint8; FileNotFoundError when it is not fetched."""
    image = cv2.imread(str(reference.path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{reference.path}: not there (fetch it: python benchmarks/fetch_real_fans.py)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _edge_lines(probe: geom.Geometry) -> list[tuple[np.ndarray, np.ndarray]]:
    """The estimated fan's left and right side edges as (point, unit direction)."""
    lines = []
    for lateral in geom.lateral_range(probe):
        x, y = geom.beam_to_image(probe, np.array([probe.start_depth, probe.end_depth]),
                                  np.array([lateral, lateral]))
        point, other = np.array([x[0], y[0]]), np.array([x[1], y[1]])
        lines.append((point, (other - point) / np.linalg.norm(other - point)))
    return lines


def _distance(points, line) -> float:
    point, direction = line
    offsets = np.asarray(points, float) - point
    return float(np.abs(offsets[:, 0] * direction[1] - offsets[:, 1] * direction[0]).max())


def score(probe: geom.Geometry | None, reference: Reference, width: int) -> dict:
    """How the estimated ``probe`` (None: no fan found) compares with ``reference``.

    Returns a dict: ``found``, ``ok`` (within the tolerances of the module docstring), and
    where found ``edge_deg`` (worst edge angle error), ``apex_px`` (sector, convex) or
    ``side_px`` (linear, trapezoid: the farthest reference edge point from the estimate).
    """
    if probe is None:
        return {"found": False, "ok": False}
    edges = _edge_lines(probe)
    estimated = [math.degrees(math.atan2(d[0], d[1])) for _, d in edges]
    result = {"found": True,
              "edge_deg": float(max(abs(a - b) for a, b in zip(estimated, reference.angles())))}
    if reference.kind in ("sector", "convex"):
        if not isinstance(probe, geom.ConvexProbe):
            return {**result, "apex_px": math.inf, "ok": False}
        result["apex_px"] = float(np.hypot(*np.subtract(probe.apex, reference.apex())))
        result["ok"] = (result["apex_px"] <= max(APEX_PX, APEX_SHARE * width)
                        and result["edge_deg"] <= EDGE_DEG)
        return result
    result["side_px"] = max(_distance(reference.left_edge, edges[0]),
                            _distance(reference.right_edge, edges[1]))
    result["ok"] = result["side_px"] <= SIDE_PX and (reference.kind == "linear"
                                                     or result["edge_deg"] <= EDGE_DEG)
    return result


# --------------------------------------------------------------------------- negatives

_REPORT = ["OB REPORT", "Patient ID ********", "GA (LMP) 22w3d", "EDD 2026/04/11",
           "BPD 54.1 mm  22w4d", "HC 201.3 mm  22w2d", "AC 176.0 mm  22w6d", "FL 38.9 mm  22w3d",
           "EFW 498 g (Hadlock)", "AFI 14.2 cm", "FHR 148 bpm", "Placenta posterior",
           "Comments:", "Normal interval growth.", "Sonographer: ***", "Page 1 / 2"]


def text_panel(seed: int, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A scanner's report page or measurement list: white and gray text on black (RGB)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((*shape, 3), np.uint8)
    scale = 0.5 + 0.5 * rng.random()
    step = int(28 * scale) + 6
    for row, y in enumerate(range(step, shape[0] - 8, step)):
        line = _REPORT[(row + seed) % len(_REPORT)]
        column = 12 + int(rng.integers(0, 3)) * shape[1] // 3 if seed % 2 else 12
        gray = int(rng.integers(150, 256))
        cv2.putText(image, line, (column, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (gray,) * 3,
                    1 + int(seed % 3 == 0), cv2.LINE_AA)
    if seed % 3 == 1:  # a table's rules
        for y in range(step // 2, shape[0], 2 * step):
            cv2.line(image, (6, y), (shape[1] - 6, y), (120, 120, 120), 1)
    return image


def blank_frame(seed: int, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A frame without a scan: black, black with noise, uniform gray, black with a logo line,
    a frozen probe-in-air frame of faint noise (RGB)."""
    rng = np.random.default_rng(seed)
    kind = seed % 5
    if kind == 0:
        gray = np.zeros(shape, np.uint8)
    elif kind == 1:  # video noise of a black screen
        gray = np.clip(rng.normal(4, 3, shape), 0, 255).astype(np.uint8)
    elif kind == 2:
        gray = np.full(shape, int(rng.integers(40, 200)), np.uint8)
    elif kind == 3:
        gray = np.zeros(shape, np.uint8)
        cv2.putText(gray, "NO SIGNAL", (shape[1] // 3, shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0,
                    200, 2, cv2.LINE_AA)
    else:  # dim noise everywhere: no dark background to stand out from
        gray = cv2.GaussianBlur(rng.rayleigh(12, shape).astype(np.float32), (0, 0), 1.0).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def negatives(count: int = 5) -> list[tuple[str, np.ndarray]]:
    """``count`` rendered text panels and ``count`` blank frames, named."""
    return ([(f"text_panel_{seed}", text_panel(seed)) for seed in range(count)]
            + [(f"blank_frame_{seed}", blank_frame(seed)) for seed in range(count)])
