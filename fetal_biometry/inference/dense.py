"""Dense class maps over whole scans: Caffe net surgery on the patch classifier.

The patch classifier (:func:`fetal_biometry.nets.spec.patch_classifier_deploy`) ends in two inner
products. Turned into convolutions (``f5`` as a conv whose kernel covers the whole ``p4`` map,
``out`` as a 1x1 conv; weights carried over unchanged) the net slides over a scan in one
forward pass and scores a patch every 4 pixels (the two 2x2 poolings). Scores on that grid are
what the patch-wise net gives for patches centred on the grid points, exactly; between grid points
the class probabilities are interpolated bilinearly.

Scans are classified at the model's spacing (:meth:`DenseClassifier.classify_scan` resamples
them, :mod:`fetal_biometry.geometry.resample`) and their maps brought back to their own grid; large
scans are scored tile by tile, so memory stays bounded.

The beam direction is applied consistently with training:

- ``channels`` and ``none``: the direction planes are images like the gray one, so a single pass
  over the encoded scan is exact;
- ``rotate``: patches were turned so the beam runs down. Densely, the scan is cut into sectors of
  nearly equal beam angle (``angle_step`` degrees wide); each sector is scored by one pass over the
  whole scan rotated by its mean angle, so every pixel is classified in a frame within half a step
  of its own beam direction.
"""
from __future__ import annotations

import json
import math
import pathlib
import tempfile

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry.geometry import probe as geom, resample
from fetal_biometry.labels import OUTSIDE
from fetal_biometry.nets import checks, spec as nets
from fetal_biometry.patches import encoding as patches

STRIDE = nets.STRIDE  # two 2x2 poolings
TILE = 128  # grid points per tile side: bounds memory (about 0.3 GB) whatever the scan size
#: Largest scan, at the model's spacing, whose probability maps are kept (5 float32 maps).
MAX_PIXELS = 4096 * 4096
MIN_SIDE = 16  # px at the model's spacing: a smaller scan is a wrong spacing, not a scan


def transplant(source, target) -> None:
    """Copy weights from the patch net into its fully convolutional twin (same values, new shapes)."""
    for name, blobs in source.params.items():
        for src, dst in zip(blobs, target.params[name]):
            dst.data[...] = src.data.reshape(dst.data.shape)


class DenseClassifier:
    """A trained patch classifier applied densely to scans of any size.

    Parameters
    ----------
    deploy, weights : path
        The patch classifier's deploy prototxt and trained ``.caffemodel``.
    encoding : {'rotate', 'channels', 'none'}
        The beam encoding the net was trained with.
    spacing_mm : float, optional
        The spacing (mm per pixel) the net was trained at: :meth:`classify_scan` resamples
        every scan to it. None: scans are classified on their own grid.
    scale : float
        Input normalisation the net was trained with (uint8 planes times ``scale``).
    """

    def __init__(self, deploy, weights, encoding: str, spacing_mm: float | None = None,
                 scale: float = patches.INPUT_SCALE, angle_step: float = 10.0):
        self.encoding, self.angle_step = encoding, angle_step
        self.spacing_mm, self.scale = spacing_mm, scale
        checks.check_weights(deploy, weights)  # Caffe would abort on weights of another net
        self.patch_net = checks.net(deploy, weights)
        self.channels, self.patch = self.patch_net.blobs["data"].data.shape[1:3]
        self.classes = self.patch_net.blobs["prob"].data.shape[1]
        if self.channels != patches.channels(encoding):
            raise ValueError(f"{deploy}: the net takes {self.channels} input channel(s), but the "
                             f"{encoding!r} encoding gives {patches.channels(encoding)}")
        self.half = self.patch // 2
        self._nets: dict[tuple[int, int, int], object] = {}

    @classmethod
    def from_model(cls, model, **kwargs) -> "DenseClassifier":
        """The classifier of a model folder (:func:`fetal_biometry.nets.model.load`) of a patch
        classifier; ValueError for a segmenter (:func:`engine` takes either)."""
        if model.kind != "patch_classifier":
            raise ValueError(f"{model.root}: a {model.kind}, not a patch classifier; sweeps take "
                             "patch classifiers for now (infer and evaluate take either)")
        return cls(model.deploy, model.weights, model.encoding, model.spacing_mm, model.scale, **kwargs)

    def net(self, shape: tuple[int, int], batch: int = 1):
        """The fully convolutional twin for ``batch`` inputs of ``shape`` (padded tiles), built
        once per size (:mod:`fetal_biometry.measure.sweeps` runs frames of a sequence in batches)."""
        key = (*shape, batch)
        if key not in self._nets:
            fcn = nets.patch_classifier_dense(self.channels, *shape, self.patch, self.classes, batch)
            # pycaffe builds nets from files only; a temporary one keeps read-only installs working.
            with tempfile.TemporaryDirectory() as folder:
                net = checks.net(nets.save(fcn, pathlib.Path(folder, "fcn.prototxt")))
            transplant(self.patch_net, net)
            self._nets[key] = net
        return self._nets[key]

    def _grid_probabilities(self, planes: np.ndarray) -> np.ndarray:
        """Class probabilities of the patches centred on every 4th pixel: (K, ceil(h/4), ceil(w/4)).

        The padded scan is cut into tiles of :data:`TILE` grid points (overlapping by the
        patch), so memory stays bounded; every grid point is still scored by its own patch.
        """
        grid = [math.ceil(side / STRIDE) for side in planes.shape[1:]]
        padded = self.padded(planes) * self.scale  # zero padding, as extract() pads patches
        probs = np.empty((self.classes, *grid), np.float32)
        for r0 in range(0, grid[0], TILE):
            for c0 in range(0, grid[1], TILE):
                r1, c1 = min(r0 + TILE, grid[0]), min(c0 + TILE, grid[1])
                tile = self.window(padded, (r0, r1), (c0, c1))
                net = self.net(tile.shape[1:])
                net.blobs["data"].data[0] = tile
                probs[:, r0:r1, c0:c1] = net.forward()["prob"][0]
        return probs

    def padded(self, planes: np.ndarray) -> np.ndarray:
        """(C, h, w) planes zero-padded so that grid point (i, j), pixel (4i, 4j), is the centre
        of the patch starting at (4i, 4j): (C, 4 (ceil(h/4) - 1) + patch, ...), float32."""
        grid = [math.ceil(side / STRIDE) for side in planes.shape[1:]]
        padded = np.zeros((planes.shape[0], *(STRIDE * (g - 1) + self.patch for g in grid)), np.float32)
        padded[:, self.half:self.half + planes.shape[1], self.half:self.half + planes.shape[2]] = planes
        return padded

    def window(self, padded: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """The part of a :meth:`padded` input the net needs to score grid rows ``[r0, r1)`` and
        columns ``[c0, c1)``."""
        (r0, r1), (c0, c1) = rows, cols
        return padded[:, STRIDE * r0:STRIDE * (r1 - 1) + self.patch,
                      STRIDE * c0:STRIDE * (c1 - 1) + self.patch]

    @staticmethod
    def _upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        ys, xs = np.mgrid[0:shape[0], 0:shape[1]] / STRIDE
        return np.stack([ndimage.map_coordinates(g, [ys, xs], order=1, mode="nearest")
                         for g in grid])

    def check_size(self, shape: tuple[int, int], spacing_mm: float | None = None) -> None:
        """Refuse a scan of ``shape`` (H, W) at the model's spacing over :data:`MAX_PIXELS`, or
        under :data:`MIN_SIDE` pixels a side (a spacing ``spacing_mm`` that cannot be the scan's)."""
        given = "" if spacing_mm is None else f" (from a spacing of {spacing_mm:g} mm per pixel)"
        if shape[0] * shape[1] > MAX_PIXELS:
            raise ValueError(f"scan of {shape[1]}x{shape[0]} px at the model's spacing{given} "
                             f"exceeds the limit of {MAX_PIXELS / 1e6:.0f} megapixels; crop it, "
                             "or check the spacing")
        if min(shape) < MIN_SIDE:
            raise ValueError(f"scan of {shape[1]}x{shape[0]} px at the model's spacing{given}: "
                             f"under {MIN_SIDE} px a side there is nothing to classify; check the spacing")

    def probabilities(self, image: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Per-class probability maps (K, H, W) of one scan on its own grid; zero outside the fan."""
        self.check_size(image.shape)
        planes = patches.encode(image, directions, self.encoding).astype(np.float32)
        if self.encoding != "rotate":
            probs = self._upsample(self._grid_probabilities(planes), image.shape)
        else:
            probs = self._rotated(planes[0], directions)
        probs[:, np.isnan(directions[..., 0])] = 0
        return probs

    def _rotated(self, gray: np.ndarray, directions: np.ndarray) -> np.ndarray:
        angles = np.degrees(np.arctan2(-directions[..., 0], directions[..., 1]))  # 0 = straight down
        inside = ~np.isnan(angles)
        bins = np.round(np.where(inside, angles, 0) / self.angle_step).astype(int)
        shape = gray.shape
        probs = np.zeros((self.classes, *shape), np.float32)
        centre = ((shape[1] - 1) / 2, (shape[0] - 1) / 2)
        for b in np.unique(bins[inside]):
            members = inside & (bins == b)
            angle = float(angles[members].mean())
            # Rotate the scan so this sector's beam runs down, classify, rotate the maps back.
            forward = cv2.getRotationMatrix2D(centre, angle, 1.0)
            turned = cv2.warpAffine(gray, forward, shape[::-1], flags=cv2.INTER_LINEAR)
            maps = self._upsample(self._grid_probabilities(turned[None]), shape)
            back = cv2.invertAffineTransform(forward)
            for k, m in enumerate(maps):
                restored = cv2.warpAffine(m, back, shape[::-1], flags=cv2.INTER_LINEAR)
                probs[k][members] = restored[members]
        return probs

    def classify(self, image: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probability maps and the label map (argmax; 255 outside the fan) on the scan's grid."""
        probs = self.probabilities(image, directions)
        labels = probs.argmax(axis=0).astype(np.uint8)
        labels[np.isnan(directions[..., 0])] = OUTSIDE
        return probs, labels

    def classify_scan(self, image: np.ndarray, probe: geom.Geometry | None,
                      spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Classify a scan at the model's spacing; maps back on the scan's own grid.

        The scan (``spacing_mm`` per pixel) is resampled to :attr:`spacing_mm` with its probe
        geometry, classified there, and its probabilities brought back bilinearly; the label map
        is their argmax (255 outside the scan's fan). Without a probe (no fan found) the whole
        image is classified, which only an encoding without directions can do
        (:func:`beam_directions`).
        """
        scale = 1.0 if self.spacing_mm is None else resample.scale_factor(spacing_mm, self.spacing_mm)
        self.check_size(resample.shape(image.shape, scale), spacing_mm)  # before allocating it
        small = resample.image(image, scale)
        directions, _ = beam_directions(probe, scale, small.shape, self.encoding)
        probs = resample.back(self.probabilities(small, directions), image.shape, scale)
        outside = np.zeros(image.shape, bool) if probe is None else ~geom.fan_mask(probe, image.shape)
        probs[:, outside] = 0
        labels = probs.argmax(axis=0).astype(np.uint8)
        labels[outside] = OUTSIDE
        return probs, labels


def engine(model, at_model_spacing: bool = True):
    """The dense classifier of a model folder of either kind (:func:`fetal_biometry.nets.model.load`):
    a :class:`DenseClassifier` for a patch classifier, a
    :class:`fetal_biometry.inference.segmentation.Segmenter` for a segmenter; both ``classify_scan``."""
    from fetal_biometry.inference import segmentation
    from fetal_biometry.nets import model as model_folder

    if model.kind == model_folder.SEGMENTER:
        return segmentation.Segmenter.from_model(model)
    classifier = DenseClassifier.from_model(model)
    if not at_model_spacing:
        classifier.spacing_mm = None
    return classifier


NO_FAN_ENCODING = "none"  # the one encoding that needs no beam directions


def beam_directions(probe: geom.Geometry | None, scale: float, shape: tuple[int, int],
                    encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """Beam directions of ``probe`` resampled by ``scale`` on a grid of ``shape``, and the mask
    of pixels outside its fan. Without a probe (no fan found) every pixel is inside, its
    direction unknown: only the encoding 'none' can use that (ValueError otherwise)."""
    if probe is not None:
        scaled = resample.geometry(probe, scale)
        directions = geom.beam_directions(scaled, shape)
        return directions, np.isnan(directions[..., 0])
    if encoding != NO_FAN_ENCODING:
        raise ValueError(f"no fan found and the model's encoding {encoding!r} needs the beam "
                         "directions: pass --geometry FILE, --accept-fan-below C, or use a model "
                         f"of encoding {NO_FAN_ENCODING!r}")
    directions = np.zeros((*shape, 2), np.float32)
    directions[..., 1] = 1.0  # a placeholder: 'none' reads only which pixels are inside
    return directions, np.zeros(shape, bool)


def infer_scan(classifier, image: np.ndarray, probe: geom.Geometry | None,
               spacing_mm: float, measure: bool = True) -> tuple[dict, np.ndarray, np.ndarray, object]:
    """Classify one scan at the model's spacing and, with ``measure``, measure its AC in mm.

    ``classifier`` is a :class:`DenseClassifier` (the AC from the fluid boundary) or a
    :class:`fetal_biometry.inference.segmentation.Segmenter` (the AC from the segmented abdomen,
    the fluid boundary as second opinion: :mod:`fetal_biometry.measure.abdomen`).

    ``spacing_mm`` is the scan's own spacing (mm per pixel); ``measure=False`` when it is only
    assumed (no AC is then reported). Returns the record (encoding, spacing, AC, ellipse, plane
    verdict and reasons), the probabilities (K, H, W), the label map and the
    :class:`fetal_biometry.measure.biometry.Measurement` (None without ``measure``).
    """
    from fetal_biometry.inference import segmentation
    from fetal_biometry.measure import abdomen, biometry

    probs, labels = classifier.classify_scan(image, probe, spacing_mm)
    record: dict = {"encoding": classifier.encoding, "model_spacing_mm": classifier.spacing_mm}
    measured = None
    if measure:
        method = abdomen if isinstance(classifier, segmentation.Segmenter) else biometry
        measured = method.measure(labels, spacing_mm)
        e = measured.ellipse
        record.update(ac_mm=measured.ac_mm, plane_acceptable=measured.accepted,
                      reasons=list(measured.reasons),
                      ellipse=None if e is None else {"center": [e.cx, e.cy],
                                                      "semi_axes": [e.a, e.b], "angle_deg": e.angle})
    return record, probs, labels, measured


def write_outputs(out: str | pathlib.Path, stem: str, image: np.ndarray, probs: np.ndarray,
                  labels: np.ndarray, measured, record: dict) -> None:
    """Write one scan's ``STEM_probs.npy`` (K, H, W float16), ``STEM_labels.png`` (classes, 255
    outside the fan), ``STEM_overlay.png`` (classes over the scan, beside the ellipse and AC when
    measured) and ``STEM.json`` (the record), each atomically."""
    from fetal_biometry import atomic, figures
    from fetal_biometry.io import scans

    out = pathlib.Path(out)
    picture = figures.class_overlay(image, labels)
    if measured is not None:
        picture = np.hstack([picture, figures.draw_measurement(image, measured)])
    with atomic.staged_file(out / f"{stem}_probs.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, probs.astype(np.float16))
    atomic.write_bytes(out / f"{stem}_labels.png", scans.encode_png(labels))
    atomic.write_bytes(out / f"{stem}_overlay.png", scans.encode_png(picture))
    atomic.write_text(out / f"{stem}.json", json.dumps(record, indent=1) + "\n")
