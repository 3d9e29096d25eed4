"""Sweeps and cine loops: the best abdominal plane of a sequence, its AC, and the benchmark's metrics.

A sonographer's probe sweeps; the scanner stores a cine loop; the AC is measured on the frame
where stomach bubble and umbilical vein (at the portal sinus) are in plane. This module does
that for a whole sequence, streamed frame by frame (memory does not grow with its length):

1. **Read** (:func:`open_sequence`): a multi-frame DICOM (frames and calibration through
   :mod:`fetal_biometry.scans`), a video (mp4, avi, ... through OpenCV; the spacing must be
   given), or a ``.mha`` / ``.nrrd`` stack (SimpleITK; spacing from its header), read in
   chunks of about :data:`CHUNK_BYTES`.
2. **Classify** (:class:`SequenceClassifier`): the frames of a sequence share the probe
   geometry, so the resampling to the model's spacing, the beam directions, the fan and the
   net's input window are computed once. Only the grid points over the fan are scored (the
   window is the fan's bounding box, plus one grid point for the interpolation); with the
   ``rotate`` encoding each sector of beam angles is scored only over its own (rotated)
   bounding box. Frames go through Caffe :data:`BATCH` at a time. The class maps are
   exactly those of :meth:`fetal_biometry.inference.DenseClassifier.classify_scan`.
3. **Score** each frame cheaply (:func:`landmark_score`): the confidence (mean probability)
   of the largest stomach-bubble and umbilical-vein components big enough to be landmarks.
   The :data:`CANDIDATES` best frames are measured in full (:func:`fetal_biometry.biometry.measure`,
   a few hundred ms a frame, too slow for every frame) and get the **plane score**
   (:func:`plane_score`): the ellipse's support on its perimeter, its residual, and the
   landmarks' confidence counted only where they lie inside the abdomen.
4. **Choose** (:func:`choose`): the accepted plane with the highest plane score; else the best
   measured abdomen (a suboptimal plane, reported as not accepted); else no frame (-1), with
   the best candidate's reasons.

Metrics of ACOUSLIC-AI (MICCAI 2024), per sweep (:func:`sweep_metrics`):

- **WFSS**, the weighted frame selection score: 1 for an optimal frame; 1 for a suboptimal one
  where the sweep has no optimal frame, 0.6 where it has; 1 for answering -1 where the sweep
  has neither; 0 otherwise (an irrelevant frame, or -1 where a usable frame existed).
- **NAE** = ``|AC_true - AC| / max(AC_true, AC)``: 1 when only one of them exists, 0 when
  neither does.
- **Dice** of the predicted abdomen mask (the filled ellipse) and the annotated one on the
  chosen frame (empty on irrelevant frames; 1 when both are empty).
- **score** = 0.5 (1 - NAE) + 0.25 Dice + 0.25 WFSS.
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import math
import os
import pathlib
import tempfile
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from scipy import ndimage

from fetal_biometry import biometry, figures, geometry as geom, patches, resample, stacks
from fetal_biometry.ellipse import Ellipse, ellipse_mask, normalized_radius
from fetal_biometry.inference import MAX_PIXELS, STRIDE, DenseClassifier, beam_directions
from fetal_biometry.labels import OUTSIDE, STOMACH, VEIN

CHUNK_BYTES = 32 << 20  # a stack is read this much at a time
BATCH = 8  # frames per Caffe forward pass
CANDIDATES = 8  # frames measured in full
STACKS = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")
VIDEOS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg")
AGREEMENT = 0.01  # relative difference below which a given spacing agrees with a file's


class SequenceError(ValueError):
    """A sequence that cannot be read as asked; the message names the file and the problem."""


# --------------------------------------------------------------------------- reading

@dataclasses.dataclass(frozen=True, eq=False)
class Sequence:
    """A cine loop opened for streaming: what it is, and its frames one by one.

    ``frames()`` yields (H, W) uint8 gray frames; ``first_rgb()`` the first frame as displayed
    (H, W, 3), for estimating the fan.
    """

    path: pathlib.Path
    kind: str  # "dicom", "video" or "stack"
    count: int
    shape: tuple[int, int]
    spacing_mm: float | None
    spacing_source: str
    fps: float | None
    warnings: tuple[str, ...]
    _frames: Callable[[], Iterator[np.ndarray]]
    _first: Callable[[], np.ndarray]

    @property
    def name(self) -> str:
        return self.path.name.split(".")[0]

    def frames(self) -> Iterator[np.ndarray]:
        return self._frames()

    def first_rgb(self) -> np.ndarray:
        return self._first()


def _given(path: pathlib.Path, found: float | None, given: float | None) -> tuple[float | None, str | None]:
    """The file's spacing checked against a given one (an error when they disagree)."""
    if given is not None and not (math.isfinite(given) and given > 0):
        raise SequenceError(f"{path}: a spacing must be a positive number of mm, got {given}")
    if found is None:
        return given, None if given is None else "given"
    if given is not None and abs(found - given) > AGREEMENT * found:
        raise SequenceError(f"{path}: the given spacing {given:g} mm disagrees with the file's "
                            f"{found:g} mm; drop --spacing or check the file")
    return found, None


def _stack(path: pathlib.Path, spacing: float | None) -> Sequence:
    import SimpleITK as sitk

    try:  # our own reading of the header: data files and sizes checked before SimpleITK
        header = stacks.read_header(path)
    except stacks.StackError as error:
        raise SequenceError(str(error)) from None
    if header.dtype != "uint8" or header.components not in (1, 3):
        raise SequenceError(f"{path}: pixels are {header.dtype} with {header.components} "
                            "component(s); expected 8-bit gray or RGB frames")
    if len(header.size) not in (2, 3):
        raise SequenceError(f"{path}: {len(header.size)}-D image; expected frames stacked along the third axis")
    reader = sitk.ImageFileReader()
    reader.SetImageIO(header.image_io)  # the format checked, no other
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise SequenceError(f"{path}: not a readable image stack: {str(error).strip().splitlines()[-1]}") from None
    size, delta = reader.GetSize(), reader.GetSpacing()
    components = reader.GetNumberOfComponents()
    if tuple(size) != header.size or components != header.components:
        raise SequenceError(f"{path}: SimpleITK reads {size} x {components} where the header "
                            f"declares {header.size} x {header.components}; not read")
    width, height = size[:2]
    count = size[2] if len(size) == 3 else 1
    if abs(delta[0] - delta[1]) > AGREEMENT * max(delta[:2]):
        raise SequenceError(f"{path}: pixels are not square ({delta[0]:g} x {delta[1]:g} mm); "
                            "resample the stack to square pixels first")
    found, source = _given(path, float(delta[0]), spacing)
    chunk = max(1, CHUNK_BYTES // (width * height * components))

    def read(start: int, n: int) -> np.ndarray:
        if len(size) == 3:
            reader.SetExtractIndex([0, 0, start])
            reader.SetExtractSize([width, height, n])
        try:
            array = sitk.GetArrayFromImage(reader.Execute())
        except RuntimeError as error:
            raise SequenceError(f"{path}: frames {start}-{start + n - 1} cannot be read (truncated "
                                f"or damaged file?): {str(error).strip().splitlines()[-1]}") from None
        return array.reshape(n, height, width, components)

    def frames() -> Iterator[np.ndarray]:
        for start in range(0, count, chunk):
            for frame in read(start, min(chunk, count - start)):
                yield frame[..., 0] if components == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)

    def first() -> np.ndarray:
        frame = read(0, 1)[0]
        return np.repeat(frame, 3, axis=2) if components == 1 else frame

    return Sequence(path, "stack", count, (height, width), found, source or "image header", None, (),
                    frames, first)


def _video(path: pathlib.Path, spacing: float | None) -> Sequence:
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        raise SequenceError(f"{path}: OpenCV cannot decode this video")
    count, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    spacing, _ = _given(path, None, spacing)

    def frames() -> Iterator[np.ndarray]:
        video = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, bgr = video.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        finally:
            video.release()

    return Sequence(path, "video", count, frame.shape[:2], spacing, "given" if spacing else "none",
                    fps or None, ("the frame count of a video is the container's estimate",),
                    frames, lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def _dicom(path: pathlib.Path, spacing: float | None, region: int | None) -> Sequence:
    from fetal_biometry import scans

    try:
        first = next(iter(scans.iter_frames(path, region=region, spacing=spacing)))
        count = scans.frame_count(path)
    except StopIteration:
        raise SequenceError(f"{path}: no frames") from None

    def frames() -> Iterator[np.ndarray]:
        for scan in scans.iter_frames(path, region=region, spacing=spacing):
            yield scan.gray

    return Sequence(path, "dicom", count, first.gray.shape, first.spacing_mm, first.spacing_source,
                    None, tuple(first.warnings), frames, lambda: first.rgb)


def open_sequence(path: str | os.PathLike, spacing: float | None = None,
                  region: int | None = None) -> Sequence:
    """Open a cine loop for streaming: a ``.mha``/``.nrrd`` stack, a video, or a DICOM file.

    ``spacing`` (mm per pixel) is needed for videos and checked against a file's own
    calibration; ``region`` picks one calibrated region of a multi-region DICOM.
    :class:`SequenceError` (or :class:`fetal_biometry.scans.ScanError`) names the file and
    the problem.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise SequenceError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(STACKS):
        return _stack(path, spacing)
    if name.endswith(VIDEOS):
        return _video(path, spacing)
    return _dicom(path, spacing, region)


# --------------------------------------------------------------------------- classifying

@dataclasses.dataclass(frozen=True)
class _Pass:
    """One forward pass over a frame: a window of grid points, optionally on a rotated frame."""

    rows: tuple[int, int]  # grid rows [r0, r1)
    cols: tuple[int, int]
    forward: np.ndarray | None = None  # rotation (2x3) taking the frame to the pass's frame
    members: np.ndarray | None = None  # pixels (small grid) this pass classifies


class SequenceClassifier:
    """Dense class maps for every frame of a sequence of one probe geometry, in batches.

    Parameters
    ----------
    classifier : DenseClassifier
    probe : the frames' probe geometry (pixels of the frames); None: no fan, the whole frames
        are classified (encoding 'none' only)
    shape : (H, W) of the frames
    spacing_mm : the frames' pixel spacing
    batch : frames per forward pass
    """

    def __init__(self, classifier: DenseClassifier, probe: geom.Geometry | None, shape: tuple[int, int],
                 spacing_mm: float, batch: int = BATCH):
        self.classifier, self.shape, self.batch = classifier, tuple(shape), batch
        self.scale = (1.0 if classifier.spacing_mm is None
                      else resample.scale_factor(spacing_mm, classifier.spacing_mm))
        small = resample.shape(self.shape, self.scale)
        if small[0] * small[1] > MAX_PIXELS:
            raise ValueError(f"frames of {small[1]}x{small[0]} px at the model's spacing exceed "
                             f"{MAX_PIXELS / 1e6:.0f} megapixels; crop the sequence")
        directions, outside = beam_directions(probe, self.scale, small, classifier.encoding)
        self.small, self.inside = small, ~outside
        self.outside = (np.zeros(self.shape, bool) if probe is None
                        else ~geom.fan_mask(probe, self.shape))
        if not self.inside.any():
            raise ValueError("the probe geometry leaves no pixel of the frames inside the fan")
        # Every input plane but the gray one is fixed by the geometry: encode them once.
        self.planes = patches.encode(np.zeros(small, np.uint8), directions, classifier.encoding)
        self.planes = self.planes.astype(np.float32) * classifier.scale
        self.grid = tuple(math.ceil(side / STRIDE) for side in small)
        self.passes = (self._sectors(directions) if classifier.encoding == "rotate"
                       else [self._window(self.inside)])

    def _window(self, where: np.ndarray, forward=None, members=None) -> _Pass:
        """The pass over the grid points around the pixels ``where`` (one point of margin)."""
        ys, xs = np.nonzero(where)
        rows = (max(0, ys.min() // STRIDE - 1), min(self.grid[0], ys.max() // STRIDE + 2))
        cols = (max(0, xs.min() // STRIDE - 1), min(self.grid[1], xs.max() // STRIDE + 2))
        return _Pass(rows, cols, forward, members)

    def _sectors(self, directions: np.ndarray) -> list[_Pass]:
        """The ``rotate`` encoding's sectors (as DenseClassifier cuts them), each in its own window."""
        c = self.classifier
        angles = np.degrees(np.arctan2(-directions[..., 0], directions[..., 1]))
        bins = np.round(np.where(self.inside, angles, 0) / c.angle_step).astype(int)
        centre = ((self.small[1] - 1) / 2, (self.small[0] - 1) / 2)
        passes = []
        for b in np.unique(bins[self.inside]):
            members = self.inside & (bins == b)
            forward = cv2.getRotationMatrix2D(centre, float(angles[members].mean()), 1.0)
            # Where the members land in the rotated frame (bilinear warps read 1 px around).
            landed = cv2.warpAffine(members.astype(np.uint8), forward, self.small[::-1],
                                    flags=cv2.INTER_LINEAR) > 0
            landed = ndimage.binary_dilation(landed, iterations=2) if landed.any() else members
            passes.append(self._window(landed, forward, members))
        return passes

    def _input(self, plane: np.ndarray, window: _Pass) -> np.ndarray:
        """The padded input of one pass for a (C, h, w) scaled plane stack."""
        c = self.classifier
        return c.window(c.padded(plane), window.rows, window.cols)

    def _maps(self, grid: np.ndarray, window: _Pass) -> np.ndarray:
        """Grid probabilities of a window, interpolated onto the small frame (zero elsewhere)."""
        (r0, r1), (c0, c1) = window.rows, window.cols
        # Beyond the last grid point of the frame the maps hold their edge values ("nearest").
        y0, y1 = STRIDE * r0, self.small[0] if r1 == self.grid[0] else STRIDE * (r1 - 1) + 1
        x0, x1 = STRIDE * c0, self.small[1] if c1 == self.grid[1] else STRIDE * (c1 - 1) + 1
        ys, xs = np.mgrid[y0:y1, x0:x1] / STRIDE
        ys, xs = ys - r0, xs - c0
        maps = np.zeros((grid.shape[0], *self.small), np.float32)
        for k, g in enumerate(grid):
            maps[k, y0:y1, x0:x1] = ndimage.map_coordinates(g, [ys, xs], order=1, mode="nearest")
        return maps

    def _batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities (K, h, w) on the small grid for each frame of a batch."""
        c = self.classifier
        smalls = [np.where(self.inside, resample.image(f, self.scale), 0).astype(np.float32) * c.scale
                  for f in frames]
        out = [np.zeros((c.classes, *self.small), np.float32) for _ in frames]
        for window in self.passes:
            inputs = []
            for gray in smalls:
                if window.forward is not None:
                    gray = cv2.warpAffine(gray, window.forward, self.small[::-1], flags=cv2.INTER_LINEAR)
                planes = self.planes.copy()
                planes[0] = gray
                inputs.append(self._input(planes, window))
            net = c.net(inputs[0].shape[1:], self.batch)
            net.blobs["data"].data[:len(inputs)] = np.stack(inputs)
            probs = net.forward()["prob"]
            for k, grid in enumerate(probs[:len(inputs)]):
                maps = self._maps(grid, window)
                if window.forward is None:
                    out[k] = maps
                    continue
                back = cv2.invertAffineTransform(window.forward)
                for j, m in enumerate(maps):
                    restored = cv2.warpAffine(m, back, self.small[::-1], flags=cv2.INTER_LINEAR)
                    out[k][j][window.members] = restored[window.members]
        for maps in out:
            maps[:, ~self.inside] = 0
        return out

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
        for small in self._batch(frames):
            probs = resample.back(small, self.shape, self.scale)
            probs[:, self.outside] = 0
            labels = probs.argmax(axis=0).astype(np.uint8)
            labels[self.outside] = OUTSIDE
            yield probs, labels


# --------------------------------------------------------------------------- scoring

def _component_confidence(labels: np.ndarray, probs: np.ndarray, cls: int, min_px: float) -> float:
    """Mean probability of the largest component of ``cls`` of at least ``min_px`` pixels (0: none)."""
    components, count = ndimage.label(labels == cls)
    if count == 0:
        return 0.0
    sizes = np.bincount(components.ravel())[1:]
    best = int(np.argmax(sizes))
    return float(probs[cls][components == best + 1].mean()) if sizes[best] >= min_px else 0.0


def enclosed_bodies(labels: np.ndarray) -> np.ndarray:
    """Body regions (background, stomach, vein) touching neither the fan's edge nor the image's,
    holes filled: candidates for the fetus. Maternal tissue reaches the fan's edge."""
    body = np.isin(labels, biometry.BODY_CLASSES)
    regions, _ = ndimage.label(body)
    edge = ndimage.binary_dilation(labels == OUTSIDE)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    touching = np.unique(regions[edge & body])
    return ndimage.binary_fill_holes(body & ~np.isin(regions, touching))


def landmark_score(labels: np.ndarray, probs: np.ndarray, spacing_mm: float) -> dict:
    """The cheap per-frame score: the confidence of the stomach bubble and the umbilical vein
    inside an enclosed body (:func:`enclosed_bodies`), and their mean (0..1)."""
    inside = np.where(enclosed_bodies(labels), labels, OUTSIDE)
    stomach = _component_confidence(inside, probs, STOMACH, biometry.MIN_STOMACH_MM2 / spacing_mm ** 2)
    vein = _component_confidence(inside, probs, VEIN, biometry.MIN_VEIN_MM2 / spacing_mm ** 2)
    return {"stomach": round(stomach, 4), "vein": round(vein, 4), "score": round((stomach + vein) / 2, 4)}


def plane_score(measured: biometry.Measurement, landmarks: dict) -> dict:
    """Support, residual and the plane score (0..1) of a measured frame.

    ``support`` is the share of the ellipse's perimeter the inliers cover; the ellipse term is
    ``support * exp(-(residual / INLIER_MM)^2)``; landmarks count with their confidence only
    when inside the ellipse: score = ellipse term * (1 + stomach + vein) / 3.
    """
    e = measured.ellipse
    if e is None:
        return {"support": 0.0, "residual_mm": None, "plane_score": 0.0}
    support, residual = measured.support.coverage, measured.support.residual_mm
    inside = {name: lm is not None and normalized_radius(e, lm.x, lm.y) <= 1
              for name, lm in (("stomach", measured.stomach), ("vein", measured.vein))}
    term = support * math.exp(-(residual / biometry.INLIER_MM) ** 2)
    marks = sum(landmarks[name] for name in ("stomach", "vein") if inside[name])
    return {"support": round(support, 4), "residual_mm": round(residual, 4),
            "plane_score": round(term * (1 + marks) / 3, 4)}


@dataclasses.dataclass(eq=False)
class Candidate:
    """A frame kept for measuring: its index, gray frame, class map and cheap score."""

    index: int
    frame: np.ndarray
    labels: np.ndarray
    landmarks: dict
    measured: biometry.Measurement | None = None
    plane: dict | None = None


def choose(candidates: list[Candidate]) -> tuple[Candidate | None, Candidate]:
    """The chosen frame (None: no frame fit to measure) and the best candidate.

    Accepted planes first, then any measured abdomen, by plane score (then landmark score).
    """
    def key(c: Candidate) -> tuple:
        return (c.measured.accepted, c.measured.ellipse is not None, c.plane["plane_score"],
                c.landmarks["score"], -c.index)

    best = max(candidates, key=key)
    return (best if best.measured.ellipse is not None else None), best


def ellipse_record(e: Ellipse | None) -> dict | None:
    return None if e is None else {"center": [e.cx, e.cy], "semi_axes": [e.a, e.b], "angle_deg": e.angle}


# --------------------------------------------------------------------------- the whole sequence

@dataclasses.dataclass(eq=False)
class SweepResult:
    """What :func:`analyse` found: per-frame scores, the chosen frame and its measurement."""

    record: dict  # the NAME.json contents
    chosen: Candidate | None
    best: Candidate
    candidates: list[Candidate]


def analyse(classifier: SequenceClassifier, sequence: Iterable[np.ndarray], spacing_mm: float,
            count: int | None = None, on_frame: Callable | None = None,
            candidates: int = CANDIDATES) -> SweepResult:
    """Classify and score every frame, measure the best candidates, choose one.

    ``on_frame(index, frame, labels, landmarks)`` is called for every frame as it is classified
    (the overlay video is written that way); only the ``candidates`` best frames are kept, so
    memory does not grow with the sequence. ``count`` (frames expected) breaks ties between
    frames without landmarks towards the middle of the sweep.
    """
    kept: list[tuple] = []  # a min-heap of (score, centrality, index, Candidate)
    scores = []
    frames = iter(sequence)
    for index, (frame, (probs, labels)) in enumerate(_paired(frames, classifier)):
        landmarks = landmark_score(labels, probs, spacing_mm)
        scores.append({"frame": index, **landmarks})
        if on_frame is not None:
            on_frame(index, frame, labels, landmarks)
        centrality = -abs(index - (count or 0) / 2)
        item = (landmarks["score"], centrality, index, Candidate(index, frame, labels, landmarks))
        if len(kept) < candidates:
            heapq.heappush(kept, item)
        elif item[:3] > kept[0][:3]:
            heapq.heapreplace(kept, item)
    if not scores:
        raise ValueError("the sequence holds no frame")
    chosen_from = sorted((item[3] for item in kept), key=lambda c: c.index)
    for c in chosen_from:
        c.measured = biometry.measure(c.labels, spacing_mm)
        c.plane = plane_score(c.measured, c.landmarks)
        scores[c.index].update(c.plane, measured=True, accepted=c.measured.accepted,
                               reasons=list(c.measured.reasons))
    chosen, best = choose(chosen_from)
    m = best.measured
    record = {
        "best_frame": chosen.index if chosen else -1,
        "ac_mm": m.ac_mm if chosen else None,
        "plane_acceptable": bool(chosen and m.accepted),
        "reasons": list(m.reasons) if chosen else ["no frame fit to measure"] + list(m.reasons),
        "best_candidate": best.index,
        "ellipse": ellipse_record(m.ellipse) if chosen else None,
        "frames_measured": [c.index for c in chosen_from],
        "frames": scores,
    }
    return SweepResult(record, chosen, best, chosen_from)


def _paired(frames: Iterator[np.ndarray], classifier: SequenceClassifier):
    """(frame, (probs, labels)) pairs, the frames held only until their batch is classified."""
    held: list[np.ndarray] = []

    def feed():
        for frame in frames:
            held.append(frame)
            yield frame

    for result in classifier.classify(feed()):
        yield held.pop(0), result


def predicted_mask(result: SweepResult, shape: tuple[int, int]) -> np.ndarray:
    """The abdomen mask of the chosen frame (the filled ellipse inside the image), or empty."""
    if result.chosen is None:
        return np.zeros(shape, bool)
    return ellipse_mask(result.chosen.measured.ellipse, shape)


# --------------------------------------------------------------------------- metrics

def wfss(chosen: int, planes: list[str]) -> float:
    """ACOUSLIC-AI's weighted frame selection score of ``chosen`` (-1: none) given the
    per-frame truth ``planes`` ("optimal", "suboptimal", "irrelevant")."""
    has_optimal, has_suboptimal = "optimal" in planes, "suboptimal" in planes
    if chosen < 0:
        return 0.0 if has_optimal or has_suboptimal else 1.0
    if planes[chosen] == "optimal":
        return 1.0
    if planes[chosen] == "suboptimal":
        return 0.6 if has_optimal else 1.0
    return 0.0


def nae(true_mm: float | None, measured_mm: float | None) -> float:
    """Normalised absolute AC error ``|t - m| / max(t, m)``; 1 when only one exists, 0 for neither."""
    if true_mm is None and measured_mm is None:
        return 0.0
    if true_mm is None or measured_mm is None:
        return 1.0
    return abs(true_mm - measured_mm) / max(true_mm, measured_mm)


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1 when both are empty."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(predicted, truth).sum() / total)


def combined(nae_value: float, dice_value: float, wfss_value: float) -> float:
    """The ACOUSLIC-style score 0.5 (1 - NAE) + 0.25 Dice + 0.25 WFSS."""
    return 0.5 * (1 - nae_value) + 0.25 * dice_value + 0.25 * wfss_value


def sweep_metrics(record: dict, predicted: np.ndarray, truth: dict, truth_mask: np.ndarray) -> dict:
    """The metrics of one sweep: ``record`` from :func:`analyse`, the predicted mask, the
    sweep's truth.json and the annotated mask of the chosen frame (zeros for -1)."""
    planes = [f["plane"] for f in truth["frames"]]
    chosen = record["best_frame"]
    values = {"wfss": wfss(chosen, planes), "nae": nae(truth["ac_mm"], record["ac_mm"]),
              "dice": dice(predicted, truth_mask)}
    values["score"] = combined(values["nae"], values["dice"], values["wfss"])
    return {"best_frame": chosen, "chosen_plane": planes[chosen] if chosen >= 0 else None,
            "ac_mm": record["ac_mm"], "true_ac_mm": truth["ac_mm"], **values}


def summarize(results: list[dict]) -> dict:
    """Means of the sweep metrics, and how often each kind of frame was chosen."""
    summary = {k: float(np.mean([r[k] for r in results])) for k in ("wfss", "nae", "dice", "score")}
    chosen = [r["chosen_plane"] or "none" for r in results]
    summary.update(sweeps=len(results), chosen={k: chosen.count(k) for k in sorted(set(chosen))})
    return summary


def table(summaries: dict[str, dict]) -> str:
    """The sweep metrics per model as a markdown table."""
    lines = ["| model | sweeps | WFSS | NAE | Dice | score | chosen frames (optimal / suboptimal / irrelevant / none) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        c = s["chosen"]
        counts = " / ".join(str(c.get(k, 0)) for k in ("optimal", "suboptimal", "irrelevant", "none"))
        lines.append(f"| {name} | {s['sweeps']} | {s['wfss']:.3f} | {s['nae']:.3f} | {s['dice']:.3f} | "
                     f"{s['score']:.3f} | {counts} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- video

class VideoWriter:
    """Frames (RGB) into an mp4 (OpenCV's mp4v codec), written aside and renamed when closed."""

    def __init__(self, path: str | os.PathLike, fps: float, shape: tuple[int, int]):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.tmp-", suffix=self.path.suffix,
                                    dir=self.path.parent)
        os.close(fd)
        self.tmp = pathlib.Path(name)
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600 files; give a plain open()'s mode
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, shape[::-1])
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise OSError(f"{self.path}: OpenCV cannot write mp4 video here")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        """Finish the file; ``keep=False`` removes it (a failed run leaves nothing)."""
        self.writer.release()
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


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
                rgb = figures.sweep_measured(rgb, c.measured, c.plane["plane_score"], index == chosen)
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


# --------------------------------------------------------------------------- evaluation

def _frame(path: pathlib.Path, index: int) -> np.ndarray:
    """Frame ``index`` of a stack, streamed up to it."""
    for k, frame in enumerate(open_sequence(path).frames()):
        if k == index:
            return frame
    raise SequenceError(f"{path}: no frame {index}")


def evaluate_sweep(classifier: DenseClassifier, folder: pathlib.Path, batch: int = BATCH,
                   candidates: int = CANDIDATES) -> dict:
    """Analyse one simulated sweep (the layout of :mod:`fetal_biometry.sweep_simulator`) and
    score the choice with the benchmark's metrics."""
    from fetal_biometry import sweep_simulator

    truth = sweep_simulator.read_truth(folder)
    sequence = open_sequence(folder / "frames.mha")
    probe = geom.from_dict(truth["probe"])
    frames = SequenceClassifier(classifier, probe, sequence.shape, sequence.spacing_mm, batch)
    result = analyse(frames, sequence.frames(), sequence.spacing_mm, sequence.count,
                     candidates=candidates)
    chosen = result.record["best_frame"]
    annotated = (_frame(folder / "masks.mha", chosen) > 0 if chosen >= 0
                 else np.zeros(sequence.shape, bool))
    metrics = sweep_metrics(result.record, predicted_mask(result, sequence.shape), truth, annotated)
    return {"sweep": folder.name, **metrics, "plane_acceptable": result.record["plane_acceptable"],
            "reasons": result.record["reasons"],
            "optimal_frames": [k for k, f in enumerate(truth["frames"]) if f["plane"] == "optimal"]}


def evaluate(model, root: str | os.PathLike, out: str | os.PathLike | None = None,
             progress: Callable = lambda items, desc: items) -> dict:
    """Every sweep of ``root`` analysed with ``model`` (a loaded model folder); the summary,
    with the per-sweep results under ``"sweeps"`` (also OUT/NAME_sweeps.json when ``out``)."""
    from fetal_biometry import atomic, sweep_simulator

    classifier = DenseClassifier.from_model(model)
    results = [evaluate_sweep(classifier, folder)
               for folder in progress(sweep_simulator.open_sweeps(root), f"sweeps ({model.name})")]
    summary = {**summarize(results), "sweeps_detail": results}
    if out is not None:
        atomic.write_text(pathlib.Path(out) / f"{model.name}_sweeps.json", json.dumps(summary, indent=1) + "\n")
    return summary


def write_report(summaries: dict[str, dict], out: str | os.PathLike) -> str:
    """OUT/sweep_table.md and OUT/sweep_summary.json; returns the table."""
    from fetal_biometry import atomic

    text = table(summaries)
    atomic.write_text(pathlib.Path(out) / "sweep_table.md", text + "\n")
    brief = {name: {k: v for k, v in s.items() if k != "sweeps_detail"} for name, s in summaries.items()}
    atomic.write_text(pathlib.Path(out) / "sweep_summary.json", json.dumps(brief, indent=1) + "\n")
    return text
