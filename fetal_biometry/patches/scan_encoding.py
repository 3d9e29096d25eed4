"""Whole scans as the segmenter's input planes, in one of three beam encodings, and back.

The segmenter (:func:`fetal_biometry.nets.segmenter`) reads whole scans (or tiles of them) at
the model's spacing; how the beam direction reaches it is the encoding:

``none``
    the gray scan alone (zero outside the fan); 1 channel. The ablation.
``channels``
    the gray scan plus the two direction planes (dx, dy) at each pixel, coded as for patches
    (:func:`fetal_biometry.patches.encode`); 3 channels.
``beam``
    the scan resampled into the probe's own grid, depth down the rows and beams across the
    columns (:func:`fetal_biometry.geometry.to_beam`): depth x angle for convex and sector
    probes, depth x position along the face for linear ones (there the grid is the imaged strip
    itself). Every beam runs straight down a column, as in the source's rotated patches, but for
    the whole scan at once: an acoustic shadow becomes a vertical band below its bone, and
    speckle, whose grain is long across the beam and short along it, has one shape and one
    orientation everywhere (in the fan it widens with depth and turns with the beam). Class maps
    come back by scan conversion (:func:`fetal_biometry.geometry.scan_convert`), the simulator's
    own. 1 channel.

Planes are uint8, scaled by :data:`fetal_biometry.patches.encoding.INPUT_SCALE` on the way into the net.
"""
from __future__ import annotations

import numpy as np

from fetal_biometry.geometry import probe as geom
from fetal_biometry.patches import encoding as patches
from fetal_biometry.labels import OUTSIDE

ENCODINGS = ("none", "channels", "beam")


def check(encoding: str) -> None:
    """ValueError for an encoding the segmenter does not know."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown segmenter encoding {encoding!r}; choose one of {ENCODINGS}")


def channels(encoding: str) -> int:
    """Input planes an encoding gives the segmenter."""
    check(encoding)
    return 3 if encoding == "channels" else 1


def grid_shape(image_shape: tuple[int, int], probe: geom.Geometry, encoding: str) -> tuple[int, int]:
    """(h, w) of the encoded planes of an ``image_shape`` scan: the scan's own or its beam grid's."""
    check(encoding)
    return geom.beam_shape(probe) if encoding == "beam" else tuple(image_shape)


def encode(image: np.ndarray, encoding: str, probe: geom.Geometry,
           directions: np.ndarray | None = None) -> np.ndarray:
    """The (C, h, w) uint8 input planes of a scan at the model's spacing.

    ``probe`` is the scan's geometry at that spacing; ``directions`` its beam-direction field
    (:func:`fetal_biometry.geometry.beam_directions`, computed from ``probe`` when None; an
    augmented scan passes its turned field).
    """
    check(encoding)
    if encoding == "beam":
        return geom.to_beam(image, probe, geom.beam_shape(probe))[None]
    if directions is None:
        directions = geom.beam_directions(probe, image.shape)
    return patches.encode(image, directions, encoding)


def encode_labels(labels: np.ndarray, encoding: str, probe: geom.Geometry) -> np.ndarray:
    """A label map on the grid :func:`encode` gives (nearest label; :data:`OUTSIDE` beyond the fan)."""
    check(encoding)
    if encoding == "beam":
        return geom.to_beam(labels, probe, geom.beam_shape(probe), nearest=True, fill=OUTSIDE)
    return labels


def decode(maps: np.ndarray, encoding: str, probe: geom.Geometry,
           image_shape: tuple[int, int]) -> np.ndarray:
    """Per-class maps (K, h, w) float32 on the encoded grid, back on the scan's (K, H, W) grid.

    Beam grids are scan-converted bilinearly (zero outside the fan); the others are the scan's
    grid already.
    """
    check(encoding)
    if encoding != "beam":
        return maps
    return np.stack([geom.scan_convert(np.ascontiguousarray(plane, np.float32), probe, image_shape)
                     for plane in maps])
