"""Dense class maps over whole scans: Caffe net surgery on the patch classifier.

The patch classifier (:func:`fetal_biometry.nets.spec.patch_classifier_deploy`) ends in two inner
products. Turned into convolutions (``f5`` as a conv whose kernel covers the whole ``p4`` map,
``out`` as a 1x1 conv; weights carried over unchanged) the net slides over a scan in one
forward pass and scores a patch every 4 pixels (the two 2x2 poolings). Scores on that grid are
what the patch-wise net gives for patches centred on the grid points, exactly; between grid points
the class probabilities are interpolated bilinearly.

Scans are classified at the model's spacing (:mod:`fetal_biometry.geometry.resample`) and their
maps brought back to their own grid. One engine serves single scans and sequences alike (split ->
net -> merge, as MONAI's sliding-window inferer): a :class:`Plan` is made once per probe geometry
and frame size (beam directions, the input planes they fix, the windows around the fan cut into
tiles of at most :data:`TILE` grid points); frames then run through ONE net
(:mod:`fetal_biometry.inference.backends`: Caffe or OpenCV's dnn, reshaped to each tile) in
batches, and their maps are merged. Memory is flat in the number and the size of scans.

The net is the patch classifier's fully convolutional twin (:func:`make_twin`), saved into the
model folder at training time (``dense.prototxt``, ``dense.caffemodel``) so that OpenCV needs no
Caffe; for older folders it is made on demand, with Caffe.

The beam direction is applied consistently with training:

- ``channels`` and ``none``: the direction planes are images like the gray one, so a single pass
  over the encoded scan is exact;
- ``rotate``: patches were turned so the beam runs down. Densely, the scan is cut into sectors of
  nearly equal beam angle (``angle_step`` degrees wide); each sector is scored by one pass over the
  whole scan rotated by its mean angle, so every pixel is classified in a frame within half a step
  of its own beam direction; only the window around the sector is scored.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import tempfile
from typing import Iterable, Iterator

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry import atomic
from fetal_biometry.geometry import probe as geom, resample
from fetal_biometry.inference import backends
from fetal_biometry.labels import OUTSIDE
from fetal_biometry.nets import checks, spec as nets
from fetal_biometry.patches import encoding as patches

STRIDE = nets.STRIDE  # two 2x2 poolings
TILE = 128  # grid points per tile side: bounds memory (about 0.3 GB a frame) whatever the scan size
#: Largest scan, at the model's spacing, whose probability maps are kept (5 float32 maps).
MAX_PIXELS = 4096 * 4096
MIN_SIDE = 16  # px at the model's spacing: a smaller scan is a wrong spacing, not a scan
BATCH = 8  # frames per forward pass of a sequence
#: The twin's files in a model folder (:func:`make_twin`).
TWIN_DEPLOY, TWIN_WEIGHTS = "dense.prototxt", "dense.caffemodel"


def transplant(source, target) -> None:
    """Copy weights from the patch net into its fully convolutional twin (same values, new shapes)."""
    for name, blobs in source.params.items():
        for src, dst in zip(blobs, target.params[name]):
            dst.data[...] = src.data.reshape(dst.data.shape)


def input_dims(deploy: str | os.PathLike) -> list[int]:
    """The (N, C, H, W) of a deploy net's one Input layer, read from its file (no Caffe)."""
    param = checks.check_net_file(deploy, "deploy")
    dims = [list(layer.input_param.shape[0].dim) for layer in param.layer if layer.type == "Input"]
    if len(dims) != 1 or len(dims[0]) != 4:
        raise ValueError(f"{deploy}: not a deploy net with one 4-d Input layer")
    return dims[0]


def _input_shape(deploy: str | os.PathLike) -> tuple[int, int, int]:
    """(channels, patch, classes) of a patch-classifier deploy net, read from its file."""
    param = checks.check_net_file(deploy, "deploy")
    dims = [list(layer.input_param.shape[0].dim) for layer in param.layer if layer.type == "Input"]
    outputs = [layer for layer in param.layer if layer.name == "out"]
    if len(dims) != 1 or len(dims[0]) != 4 or dims[0][2] != dims[0][3] or len(outputs) != 1:
        raise ValueError(f"{deploy}: not a patch classifier deploy net (one square Input, an 'out' layer)")
    out = outputs[0]
    classes = (out.inner_product_param if out.type == "InnerProduct" else out.convolution_param).num_output
    return dims[0][1], dims[0][2], classes


def make_twin(deploy: str | os.PathLike, weights: str | os.PathLike,
              folder: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the fully convolutional twin of a patch classifier into ``folder`` (needs Caffe):
    :data:`TWIN_DEPLOY` (input one patch; any larger input scores a grid) and
    :data:`TWIN_WEIGHTS` (the same values, reshaped by :func:`transplant`)."""
    channels, patch, classes = _input_shape(deploy)
    checks.check_weights(deploy, weights)  # Caffe would abort on weights of another net
    source = checks.net(deploy, weights)
    folder = pathlib.Path(folder)
    twin_deploy = nets.save(nets.patch_classifier_dense(channels, patch, patch, patch, classes),
                            folder / TWIN_DEPLOY)
    twin = checks.net(twin_deploy)
    transplant(source, twin)
    with atomic.staged_file(folder / TWIN_WEIGHTS) as tmp:
        twin.save(str(tmp))
    return twin_deploy, folder / TWIN_WEIGHTS


def _saved_twin(model) -> tuple[pathlib.Path, pathlib.Path] | None:
    """The twin files model.json names, if they exist and were made from the model's weights."""
    import hashlib

    from fetal_biometry import paths

    named = model.record.get("dense")
    if not isinstance(named, dict) or not all(isinstance(named.get(k), str) for k in ("deploy", "weights")):
        return None
    where = model.root / "model.json"
    try:  # held to the model folder's rule: no '..', absolute path or link out of it
        twin = tuple(paths.inside(model.root, named[k], where, "the model's files") for k in ("deploy", "weights"))
    except paths.OutsideFolder as error:
        raise ValueError(str(error)) from None
    if not all(path.is_file() for path in twin):
        return None
    if named.get("made_from_sha256") != hashlib.sha256(model.weights.read_bytes()).hexdigest():
        return None  # the weights changed since: the twin is stale
    return twin


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
    backend : {'caffe', 'opencv'}
        What runs the net (:mod:`fetal_biometry.inference.backends`).
    twin : (deploy, weights), optional
        The fully convolutional twin's files (:func:`make_twin`); without them it is made here,
        with Caffe.
    """

    def __init__(self, deploy, weights, encoding: str, spacing_mm: float | None = None,
                 scale: float = patches.INPUT_SCALE, angle_step: float = 10.0, backend: str = "caffe",
                 twin: tuple[pathlib.Path, pathlib.Path] | None = None):
        self.encoding, self.angle_step = encoding, angle_step
        self.spacing_mm, self.scale = spacing_mm, scale
        self.channels, self.patch, self.classes = _input_shape(deploy)
        if self.channels != patches.channels(encoding):
            raise ValueError(f"{deploy}: the net takes {self.channels} input channel(s), but the "
                             f"{encoding!r} encoding gives {patches.channels(encoding)}")
        self.half = self.patch // 2
        if twin is None:
            try:
                from fetal_biometry.caffe_env import caffe
                caffe()
            except ImportError as error:
                raise ValueError(f"{deploy}: no dense twin made from {weights} beside it, and "
                                 f"without Caffe ({error}) none can be made; run it once with "
                                 "Caffe, or retrain") from None
            # pycaffe builds nets from files only; a temporary folder keeps read-only installs working.
            with tempfile.TemporaryDirectory() as folder:
                self.net = backends.open_net(*make_twin(deploy, weights, folder), backend)
        else:
            self.net = backends.open_net(*twin, backend)

    @classmethod
    def from_model(cls, model, backend: str = "caffe", **kwargs) -> "DenseClassifier":
        """The classifier of a model folder (:func:`fetal_biometry.nets.model.load`) of a patch
        classifier (ValueError for a segmenter: :func:`engine` takes either), from the twin saved
        in it when it was made from the folder's weights as they are now; else the twin is made
        here, with Caffe (folders trained before twins were saved)."""
        if model.kind != "patch_classifier":
            raise ValueError(f"{model.root}: a {model.kind}, not a patch classifier; sweeps take "
                             "patch classifiers for now (infer and evaluate take either)")
        return cls(model.deploy, model.weights, model.encoding, model.spacing_mm, model.scale,
                   backend=backend, twin=_saved_twin(model), **kwargs)

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

    def plan(self, probe: geom.Geometry | None, shape: tuple[int, int]) -> "Plan":
        """The :class:`Plan` for frames of ``shape`` with ``probe`` (both at the model's spacing);
        no probe (no fan found): the whole frames, which only an encoding without directions can
        classify (:func:`beam_directions`)."""
        return Plan(self, beam_directions(probe, 1.0, shape, self.encoding)[0])

    def probabilities(self, image: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Per-class probability maps (K, H, W) of one scan already at the model's spacing, given
        its beam directions; zero outside the fan."""
        return Plan(self, directions).run([image])[0]

    def classify_scan(self, image: np.ndarray, probe: geom.Geometry | None,
                      spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Classify a scan at the model's spacing; maps back on the scan's own grid.

        The scan (``spacing_mm`` per pixel) is resampled to :attr:`spacing_mm` with its probe
        geometry, classified there, and its probabilities brought back bilinearly; the label map
        is their argmax (255 outside the scan's fan). Without a probe (no fan found) the whole
        image is classified, which only an encoding without directions can do
        (:func:`beam_directions`).
        """
        return next(SequenceClassifier(self, probe, image.shape, spacing_mm, 1).classify([image]))


@dataclasses.dataclass(frozen=True)
class _Pass:
    """One window of grid points scored over a frame, optionally rotated, in tiles."""

    rows: tuple[int, int]  # grid rows [r0, r1)
    cols: tuple[int, int]
    forward: np.ndarray | None = None  # rotation (2x3) taking the frame to the pass's frame
    members: np.ndarray | None = None  # pixels this pass classifies (None: all)

    def tiles(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Grid rows and columns of the tiles, at most :data:`TILE` points a side."""
        (r0, r1), (c0, c1) = self.rows, self.cols
        return [((r, min(r + TILE, r1)), (c, min(c + TILE, c1)))
                for r in range(r0, r1, TILE) for c in range(c0, c1, TILE)]


class Plan:
    """Where the net runs over frames of one size with the given beam directions (at the model's
    spacing): the windows (one per ``rotate`` sector, else one around the fan), cut into tiles, and
    the input planes that the geometry fixes. Made once; :meth:`run` takes any number of frames."""

    def __init__(self, classifier: DenseClassifier, directions: np.ndarray):
        self.classifier, self.shape = classifier, directions.shape[:2]
        classifier.check_size(self.shape)
        self.inside = ~np.isnan(directions[..., 0])
        if not self.inside.any():
            raise ValueError("the probe geometry leaves no pixel of the scan inside the fan")
        # Every input plane but the gray one is fixed by the geometry: encode them once.
        planes = patches.encode(np.zeros(self.shape, np.uint8), directions, classifier.encoding)
        self.planes = planes.astype(np.float32) * classifier.scale
        self.grid = tuple(math.ceil(side / STRIDE) for side in self.shape)
        self.passes = (self._sectors(directions) if classifier.encoding == "rotate"
                       else [self._window(self.inside)])

    def _window(self, where: np.ndarray, forward=None, members=None) -> _Pass:
        """The pass over the grid points around the pixels ``where`` (one point of margin)."""
        ys, xs = np.nonzero(where)
        rows = (max(0, ys.min() // STRIDE - 1), min(self.grid[0], ys.max() // STRIDE + 2))
        cols = (max(0, xs.min() // STRIDE - 1), min(self.grid[1], xs.max() // STRIDE + 2))
        return _Pass(rows, cols, forward, members)

    def _sectors(self, directions: np.ndarray) -> list[_Pass]:
        """The ``rotate`` encoding's sectors of nearly equal beam angle, each in its own window."""
        angles = np.degrees(np.arctan2(-directions[..., 0], directions[..., 1]))  # 0 = straight down
        bins = np.round(np.where(self.inside, angles, 0) / self.classifier.angle_step).astype(int)
        centre = ((self.shape[1] - 1) / 2, (self.shape[0] - 1) / 2)
        passes = []
        for b in np.unique(bins[self.inside]):
            members = self.inside & (bins == b)
            forward = cv2.getRotationMatrix2D(centre, float(angles[members].mean()), 1.0)
            # Where the members land in the rotated frame (bilinear warps read 1 px around).
            landed = cv2.warpAffine(members.astype(np.uint8), forward, self.shape[::-1],
                                    flags=cv2.INTER_LINEAR) > 0
            landed = ndimage.binary_dilation(landed, iterations=2) if landed.any() else members
            passes.append(self._window(landed, forward, members))
        return passes

    def _maps(self, grid: np.ndarray, window: _Pass) -> np.ndarray:
        """Grid probabilities of a window, interpolated onto the frame (zero elsewhere)."""
        (r0, r1), (c0, c1) = window.rows, window.cols
        # Beyond the last grid point of the frame the maps hold their edge values ("nearest").
        y0, y1 = STRIDE * r0, self.shape[0] if r1 == self.grid[0] else STRIDE * (r1 - 1) + 1
        x0, x1 = STRIDE * c0, self.shape[1] if c1 == self.grid[1] else STRIDE * (c1 - 1) + 1
        ys, xs = np.mgrid[y0:y1, x0:x1] / STRIDE
        ys, xs = ys - r0, xs - c0
        maps = np.zeros((grid.shape[0], *self.shape), np.float32)
        for k, g in enumerate(grid):
            maps[k, y0:y1, x0:x1] = ndimage.map_coordinates(g, [ys, xs], order=1, mode="nearest")
        return maps

    def _scores(self, padded: list[np.ndarray], window: _Pass) -> list[np.ndarray]:
        """The window's grid probabilities (K, rows, cols) per padded frame, tile by tile."""
        c = self.classifier
        (r0, r1), (c0, c1) = window.rows, window.cols
        grids = [np.empty((c.classes, r1 - r0, c1 - c0), np.float32) for _ in padded]
        for rows, cols in window.tiles():
            probs = c.net.run(np.stack([c.window(p, rows, cols) for p in padded]))
            for grid, prob in zip(grids, probs):
                grid[:, rows[0] - r0:rows[1] - r0, cols[0] - c0:cols[1] - c0] = prob
        return grids

    def run(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities (K, h, w) for each frame (uint8 or float, at the model's spacing) of a batch."""
        c = self.classifier
        grays = [np.where(self.inside, g, 0).astype(np.float32) * c.scale for g in grays]
        out = [np.zeros((c.classes, *self.shape), np.float32) for _ in grays]
        for window in self.passes:
            padded = []
            for gray in grays:
                if window.forward is not None:
                    gray = cv2.warpAffine(gray, window.forward, self.shape[::-1], flags=cv2.INTER_LINEAR)
                planes = self.planes.copy()
                planes[0] = gray
                padded.append(c.padded(planes))
            for k, grid in enumerate(self._scores(padded, window)):
                maps = self._maps(grid, window)
                if window.forward is None:
                    out[k] = maps
                    continue
                back = cv2.invertAffineTransform(window.forward)
                for j, m in enumerate(maps):
                    restored = cv2.warpAffine(m, back, self.shape[::-1], flags=cv2.INTER_LINEAR)
                    out[k][j][window.members] = restored[window.members]
        for maps in out:
            maps[:, ~self.inside] = 0
        return out


class SequenceClassifier:
    """Dense class maps for every frame of a sequence of one probe geometry, in batches: the
    resampling, fan and the classifier's plan (:meth:`DenseClassifier.plan`,
    :meth:`fetal_biometry.inference.segmentation.Segmenter.plan`) are made once for the whole
    sequence. Both kinds classify single scans through it too (``classify_scan``, batches of one).

    Parameters
    ----------
    classifier : DenseClassifier or Segmenter
    probe : the frames' probe geometry (pixels of the frames); None: no fan, the whole frames
        are classified (the patch classifier's encoding 'none' only)
    shape : (H, W) of the frames
    spacing_mm : the frames' pixel spacing
    batch : frames per forward pass
    """

    def __init__(self, classifier, probe: geom.Geometry | None, shape: tuple[int, int],
                 spacing_mm: float, batch: int = BATCH):
        self.classifier, self.shape, self.batch = classifier, tuple(shape), batch
        self.segmenter = not isinstance(classifier, DenseClassifier)  # whose frame choice applies
        self.values = getattr(classifier, "values", None)  # Segmenter: output index -> label value
        self.scale = (1.0 if classifier.spacing_mm is None
                      else resample.scale_factor(spacing_mm, classifier.spacing_mm))
        small = resample.shape(self.shape, self.scale)
        classifier.check_size(small, spacing_mm)  # before allocating anything of that size
        self.plan = classifier.plan(None if probe is None else resample.geometry(probe, self.scale), small)
        self.outside = np.zeros(self.shape, bool) if probe is None else ~geom.fan_mask(probe, self.shape)

    def classify(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(probabilities (K, H, W), labels (H, W) uint8, 255 outside the fan) per frame, in order."""
        pending: list[np.ndarray] = []
        for frame in frames:
            if frame.shape != self.shape:
                raise ValueError(f"a frame of {frame.shape[1]}x{frame.shape[0]} px in a sequence of "
                                 f"{self.shape[1]}x{self.shape[0]}")
            pending.append(frame)
            if len(pending) == self.batch:
                yield from self._finish(pending)
                pending = []
        if pending:
            yield from self._finish(pending)

    def _finish(self, frames: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for small in self.plan.run([resample.image(f, self.scale) for f in frames]):
            probs = resample.back(small, self.shape, self.scale)
            probs[:, self.outside] = 0
            labels = probs.argmax(axis=0).astype(np.uint8)
            if self.values is not None:  # a segmenter's outputs are its class table's indices
                labels = self.values[labels]
            labels[self.outside] = OUTSIDE
            yield probs, labels


def engine(model, at_model_spacing: bool = True, backend: str = "caffe"):
    """The dense classifier of a model folder of either kind (:func:`fetal_biometry.nets.model.load`):
    a :class:`DenseClassifier` for a patch classifier, a
    :class:`fetal_biometry.inference.segmentation.Segmenter` for a segmenter; both ``classify_scan``, on
    ``backend`` (:mod:`fetal_biometry.inference.backends`)."""
    from fetal_biometry.inference import segmentation
    from fetal_biometry.nets import model as model_folder

    if model.kind == model_folder.SEGMENTER:
        return segmentation.Segmenter.from_model(model, backend)
    classifier = DenseClassifier.from_model(model, backend)
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

    A segmenter of the head and femur too (``panel``: its table has their classes) measures what
    the plane it sees allows (:func:`fetal_biometry.measure.plane.measure_plane`: AC; HC, OFD, BPD
    and cephalic index; or FL), and the record says the plane type and its measurements
    (:func:`fetal_biometry.measure.plane.record`).

    ``spacing_mm`` is the scan's own spacing (mm per pixel); ``measure=False`` when it is only
    assumed (no AC is then reported). Returns the record (encoding, spacing, AC, ellipse, plane
    verdict and reasons), the probabilities (K, H, W), the label map and the
    :class:`fetal_biometry.measure.biometry.Measurement` (a
    :class:`fetal_biometry.measure.plane.PlaneResult` for a panel segmenter; None without ``measure``).
    """
    from fetal_biometry.inference import segmentation
    from fetal_biometry.measure import abdomen, biometry, plane

    probs, labels = classifier.classify_scan(image, probe, spacing_mm)
    record: dict = {"encoding": classifier.encoding, "model_spacing_mm": classifier.spacing_mm}
    measured = None
    if measure and isinstance(classifier, segmentation.Segmenter) and classifier.panel:
        # The plane decides what is measured.
        measured = plane.measure_plane(labels, spacing_mm, probe)
        record.update(plane.record(measured))
    elif measure:
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
    from fetal_biometry import figures
    from fetal_biometry.io import scans

    out = pathlib.Path(out)
    from fetal_biometry.measure import plane

    picture = figures.class_overlay(image, labels)
    if measured is not None:
        draw = figures.draw_plane if isinstance(measured, plane.PlaneResult) else figures.draw_measurement
        picture = np.hstack([picture, draw(image, measured)])
    with atomic.staged_file(out / f"{stem}_probs.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, probs.astype(np.float16))
    atomic.write_bytes(out / f"{stem}_labels.png", scans.encode_png(labels))
    atomic.write_bytes(out / f"{stem}_overlay.png", scans.encode_png(picture))
    atomic.write_text(out / f"{stem}.json", json.dumps(record, indent=1) + "\n")
