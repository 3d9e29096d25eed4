"""Ultrasound probe geometry: where each beam runs in the image.

A B-mode image is made along beams. Its natural coordinates are *beam coordinates*:
``depth`` (distance travelled along the beam, pixels) and ``lateral`` (which beam: an angle
for a convex probe, a position along the transducer face for a linear one). This module maps
between beam coordinates and the image grid, and gives the quantities the rest of the project
needs from a probe: the fan mask, the beam direction at every pixel, and scan conversion.

Conventions: pixel centres sit at integer coordinates, ``x`` is the column and ``y`` the row
(pointing down). Angles are in degrees from +y (straight down), negative to the left (-x).
Depths are in pixels. A geometry is plain, hashable data; :func:`to_dict` and
:func:`from_dict` give its JSON form, as stored in a dataset's case files::

    {"type": "convex", "apex": [x, y], "start_depth": r0, "end_depth": r1,
     "angles": [left, right]}
    {"type": "linear", "origin": [x, y], "width": w, "start_depth": d0, "end_depth": d1,
     "angle": steer}

either with an optional ``"clip": [x0, y0, x1, y1]`` (absent when None, so older records read
unchanged).

Convex (curvilinear, sector) probes send beams along rays from a virtual apex, which may lie
above the image (``y < 0``); the imaged fan is the annulus sector ``start_depth <= r <=
end_depth`` between the two edge angles. Linear probes send parallel beams from a horizontal
face of ``width`` pixels starting at ``origin`` (its left end), all steered by ``angle``; the
imaged strip is a rectangle (``angle == 0``) or a parallelogram.

A fan may be cut by the display: a zoomed image shows only part of it, inside the screen's
region. ``clip`` (x0, y0, x1, y1), pixel centres, both ends included, is then the rectangle
where the fan meets that border: pixels outside it are not imaged, whatever the beams say.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Union

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class ConvexProbe:
    """Beams on rays from ``apex`` (x, y), between ``angles`` (left, right) in degrees."""

    apex: tuple[float, float]
    start_depth: float
    end_depth: float
    angles: tuple[float, float]
    clip: tuple[float, float, float, float] | None = None


@dataclasses.dataclass(frozen=True)
class LinearProbe:
    """Parallel beams from a horizontal face at ``origin`` (its left end), ``width`` px long."""

    origin: tuple[float, float]
    width: float
    start_depth: float
    end_depth: float
    angle: float = 0.0
    clip: tuple[float, float, float, float] | None = None


Geometry = Union[ConvexProbe, LinearProbe]


def lateral_range(geometry: Geometry) -> tuple[float, float]:
    """The first and last beam's lateral coordinate (degrees for convex, px for linear)."""
    if isinstance(geometry, ConvexProbe):
        return geometry.angles
    return 0.0, geometry.width


def beam_to_image(geometry: Geometry, depth: np.ndarray,
                  lateral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates ``(x, y)`` of beam coordinates ``(depth, lateral)``."""
    depth, lateral = np.asarray(depth, float), np.asarray(lateral, float)
    if isinstance(geometry, ConvexProbe):
        theta = np.radians(lateral)
        return (geometry.apex[0] + depth * np.sin(theta),
                geometry.apex[1] + depth * np.cos(theta))
    steer = math.radians(geometry.angle)
    return (geometry.origin[0] + lateral + depth * math.sin(steer),
            geometry.origin[1] + depth * math.cos(steer))


def image_to_beam(geometry: Geometry, x: np.ndarray,
                  y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beam coordinates ``(depth, lateral)`` of image coordinates ``(x, y)``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if isinstance(geometry, ConvexProbe):
        dx, dy = x - geometry.apex[0], y - geometry.apex[1]
        return np.hypot(dx, dy), np.degrees(np.arctan2(dx, dy))
    steer = math.radians(geometry.angle)
    depth = (y - geometry.origin[1]) / math.cos(steer)
    return depth, x - geometry.origin[0] - depth * math.sin(steer)


def _pixel_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.indices(shape, dtype=float)
    return x, y


def _inside(geometry: Geometry, depth: np.ndarray, lateral: np.ndarray,
            x: np.ndarray, y: np.ndarray) -> np.ndarray:
    lo, hi = lateral_range(geometry)
    inside = ((depth >= geometry.start_depth) & (depth <= geometry.end_depth)
              & (lateral >= lo) & (lateral <= hi))
    if geometry.clip is not None:
        x0, y0, x1, y1 = geometry.clip
        inside &= (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    return inside


def fan_mask(geometry: Geometry, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie inside the imaged fan or strip
    (and inside its ``clip`` rectangle, if any)."""
    mask = np.empty(shape, bool)
    for rows, x, y, depth, lateral in _beam_blocks(geometry, shape):
        mask[rows] = _inside(geometry, depth, lateral, x, y)
    return mask


_BLOCK_ROWS = 256


def _beam_blocks(geometry: Geometry, shape: tuple[int, int]):
    """``(rows, x, y, depth, lateral)`` for blocks of image rows: float64 temporaries of a whole
    8000 x 8000 scan would take several GB."""
    for top in range(0, shape[0], _BLOCK_ROWS):
        rows = slice(top, min(top + _BLOCK_ROWS, shape[0]))
        y, x = np.mgrid[rows, 0:shape[1]].astype(float)
        yield (rows, x, y, *image_to_beam(geometry, x, y))


def beam_directions(geometry: Geometry, shape: tuple[int, int]) -> np.ndarray:
    """Unit vector ``(dx, dy)`` of sound travel at each pixel, (H, W, 2) float32.

    The sound travels away from the apex (convex) or along the steering angle (linear).
    Pixels outside the fan are NaN, so ``np.isnan(d[..., 0])`` is the complement of
    :func:`fan_mask`.
    """
    directions = np.full((*shape, 2), np.nan, np.float32)
    for rows, x, y, depth, lateral in _beam_blocks(geometry, shape):
        inside = _inside(geometry, depth, lateral, x, y)
        block = directions[rows]
        if isinstance(geometry, ConvexProbe):  # along the ray from the apex
            r, dx, dy = depth[inside], x[inside] - geometry.apex[0], y[inside] - geometry.apex[1]
            at_apex = r == 0  # where a fan starting at depth 0 has its apex: straight down
            r[at_apex], dy[at_apex] = 1.0, 1.0
            block[inside] = np.stack([dx / r, dy / r], axis=-1)
        else:
            steer = math.radians(geometry.angle)
            block[inside] = (math.sin(steer), math.cos(steer))
    return directions


def beam_samples(geometry: Geometry, beam_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Depth and lateral coordinates of a beam grid: ``(n_depth,)`` and ``(n_beams,)``.

    A beam grid of shape ``(n_depth, n_beams)`` samples depth uniformly from ``start_depth``
    to ``end_depth`` and beams uniformly over :func:`lateral_range`, both ends included: the
    layout :func:`scan_convert` expects.
    """
    n_depth, n_beams = beam_shape
    if n_depth < 2 or n_beams < 2:
        raise ValueError(f"a beam grid needs at least 2 x 2 samples, got {beam_shape}")
    return (np.linspace(geometry.start_depth, geometry.end_depth, n_depth),
            np.linspace(*lateral_range(geometry), n_beams))


@functools.lru_cache(maxsize=8)
def _remap_tables(geometry: Geometry, shape: tuple[int, int],
                  beam_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Cached because one scan converts several beam images (echo, labels) of one geometry.
    x, y = _pixel_grid(shape)
    depth, lateral = image_to_beam(geometry, x, y)
    inside = _inside(geometry, depth, lateral, x, y)
    (d0, d1), (l0, l1) = (geometry.start_depth, geometry.end_depth), lateral_range(geometry)
    rows = ((depth - d0) / (d1 - d0) * (beam_shape[0] - 1)).astype(np.float32)
    cols = ((lateral - l0) / (l1 - l0) * (beam_shape[1] - 1)).astype(np.float32)
    for table in (cols, rows, inside):
        table.setflags(write=False)
    return cols, rows, inside


def scan_convert(beam_image: np.ndarray, geometry: Geometry, shape: tuple[int, int],
                 nearest: bool = False, fill: float = 0) -> np.ndarray:
    """Resample a beam-coordinate image onto the image grid.

    Parameters
    ----------
    beam_image : ndarray, shape (n_depth, n_beams)
        Samples laid out as :func:`beam_samples` describes (rows: depth, columns: beams from
        the left edge to the right edge). Any dtype ``cv2.remap`` takes (uint8, float32, ...).
    geometry : ConvexProbe or LinearProbe
    shape : (H, W)
        Output image shape.
    nearest : bool
        Nearest-neighbour instead of bilinear interpolation (use it for label maps).
    fill : scalar
        Value of pixels outside the fan.

    Returns
    -------
    ndarray, shape (H, W), dtype of ``beam_image``
    """
    beam_image = np.asarray(beam_image)
    cols, rows, inside = _remap_tables(geometry, tuple(shape), beam_image.shape[:2])
    image = cv2.remap(beam_image, cols, rows,
                      cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)  # fan-edge pixels sit on the grid edge
    image[~inside] = fill
    return image


def beam_shape(geometry: Geometry, step: float = 1.0) -> tuple[int, int]:
    """A beam grid of about ``step`` pixels between samples: ``(n_depth, n_beams)``.

    Depth is sampled every ``step`` pixels; beams ``step`` pixels apart at mid-depth for a
    convex probe (closer above, wider below), along the face for a linear one. The simulator
    samples its physics finer (:func:`fetal_biometry.simulator.beam_grid`); the segmenter's
    ``beam`` encoding samples scans at this grid of the model's spacing.
    """
    lo, hi = lateral_range(geometry)
    if isinstance(geometry, ConvexProbe):
        across = (geometry.start_depth + geometry.end_depth) / 2 * math.radians(hi - lo)
    else:
        across = hi - lo
    return (math.ceil((geometry.end_depth - geometry.start_depth) / step) + 1,
            math.ceil(across / step) + 1)


def to_beam(image: np.ndarray, geometry: Geometry, beam_shape: tuple[int, int],
            nearest: bool = False, fill: float = 0) -> np.ndarray:
    """Sample an image on a beam grid: the inverse of :func:`scan_convert`.

    Each beam-grid sample ``(depth, lateral)`` (:func:`beam_samples`) reads the image at
    :func:`beam_to_image` of it, bilinearly or (``nearest``, for label maps) the nearest pixel;
    samples beyond the image, or outside a ``clip`` rectangle, are ``fill``. The simulator
    evaluates its anatomy at the same points (:func:`fetal_biometry.simulator.beam_grid`), and
    :func:`scan_convert` brings a beam image back: one pair of mappings serves both.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (C, H, W)
    geometry : ConvexProbe or LinearProbe
    beam_shape : (n_depth, n_beams)

    Returns
    -------
    ndarray, shape (n_depth, n_beams) or (C, n_depth, n_beams), dtype of ``image``
    """
    image = np.asarray(image)
    if image.ndim == 3:
        return np.stack([to_beam(plane, geometry, beam_shape, nearest, fill) for plane in image])
    x, y = _beam_points(geometry, tuple(beam_shape))
    beam = cv2.remap(image, x, y, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    if geometry.clip is not None:
        x0, y0, x1, y1 = geometry.clip
        beam[(x < x0 - 0.5) | (x > x1 + 0.5) | (y < y0 - 0.5) | (y > y1 + 0.5)] = fill
    return beam


@functools.lru_cache(maxsize=8)
def _beam_points(geometry: Geometry, beam_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    depth, lateral = beam_samples(geometry, beam_shape)
    x, y = np.broadcast_arrays(*beam_to_image(geometry, depth[:, None], lateral[None, :]))
    x, y = x.astype(np.float32), y.astype(np.float32)  # a linear probe's y is one column: broadcast
    for table in (x, y):
        table.setflags(write=False)
    return x, y


def problems(geometry: Geometry, shape: tuple[int, int]) -> list[str]:
    """What is wrong with a geometry for an image of ``shape`` (empty list when nothing)."""
    found = []
    if not 0 <= geometry.start_depth < geometry.end_depth:
        found.append(f"depths must satisfy 0 <= start_depth < end_depth, got "
                     f"{geometry.start_depth} and {geometry.end_depth}")
    lo, hi = lateral_range(geometry)
    if not lo < hi:
        found.append(f"lateral range must increase, got {lo} to {hi}")
    if isinstance(geometry, ConvexProbe) and not -90 < lo < hi < 90:
        found.append(f"fan angles must lie within (-90, 90) degrees, got {lo} and {hi}")
    if isinstance(geometry, LinearProbe) and not -60 <= geometry.angle <= 60:
        found.append(f"steering angle must lie within [-60, 60] degrees, got {geometry.angle}")
    if geometry.clip is not None and not (geometry.clip[0] < geometry.clip[2]
                                          and geometry.clip[1] < geometry.clip[3]):
        found.append(f"clip rectangle must satisfy x0 < x1 and y0 < y1, got {list(geometry.clip)}")
    if not found and not fan_mask(geometry, shape).any():
        found.append(f"the fan lies entirely outside the {shape[1]}x{shape[0]} image")
    return found


def to_dict(geometry: Geometry) -> dict:
    """JSON-able form of a geometry (see the module docstring)."""
    if isinstance(geometry, ConvexProbe):
        data = {"type": "convex", "apex": list(geometry.apex),
                "start_depth": geometry.start_depth, "end_depth": geometry.end_depth,
                "angles": list(geometry.angles)}
    else:
        data = {"type": "linear", "origin": list(geometry.origin), "width": geometry.width,
                "start_depth": geometry.start_depth, "end_depth": geometry.end_depth,
                "angle": geometry.angle}
    if geometry.clip is not None:
        data["clip"] = list(geometry.clip)
    return data


_FIELDS = {"convex": (ConvexProbe, {"apex": 2, "start_depth": 0, "end_depth": 0, "angles": 2}),
           "linear": (LinearProbe, {"origin": 2, "width": 0, "start_depth": 0,
                                    "end_depth": 0, "angle": 0})}
_OPTIONAL = {"clip": 4}


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"probe field {name!r} must be a finite number, got {value!r}")
    return float(value)


def from_dict(data: dict) -> Geometry:
    """Geometry from its JSON form; ValueError naming the field that is missing or malformed."""
    if not isinstance(data, dict) or data.get("type") not in _FIELDS:
        raise ValueError(f"probe must be an object with type 'convex' or 'linear', got {data!r}")
    cls, fields = _FIELDS[data["type"]]
    values = {}
    for name, length in {**fields, **_OPTIONAL}.items():
        if name not in data:
            if name in _OPTIONAL:
                continue
            raise ValueError(f"{data['type']} probe lacks field {name!r}")
        value = data[name]
        if length == 0:
            values[name] = _number(value, name)
        elif isinstance(value, (list, tuple)) and len(value) == length:
            values[name] = tuple(_number(v, name) for v in value)
        else:
            raise ValueError(f"probe field {name!r} must be a list of {length} numbers, got {value!r}")
    unknown = set(data) - set(fields) - set(_OPTIONAL) - {"type"}
    if unknown:
        raise ValueError(f"{data['type']} probe has unknown fields {sorted(unknown)}")
    return cls(**values)


def read_file(path, shape: tuple[int, int]) -> Geometry:
    """The probe geometry in a JSON file (a dataset case record or a bare probe object),
    checked against an image of ``shape``; ValueError naming the file and the problem."""
    import json
    import pathlib

    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "probe" in data:  # a dataset case record
            data = data["probe"]
        probe = from_dict(data)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read it: {error}") from None
    except ValueError as error:  # json.JSONDecodeError is one
        raise ValueError(f"{path}: not a probe geometry (JSON case record or probe object): {error}") from None
    found = problems(probe, shape)
    if found:
        raise ValueError(f"{path}: " + "; ".join(found))
    return probe
