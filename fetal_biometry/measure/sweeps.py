"""Sweeps and cine loops: the best abdominal plane of a sequence, its AC, and the benchmark's metrics.

A sonographer's probe sweeps; the scanner stores a cine loop; the AC is measured on the frame
where stomach bubble and umbilical vein (at the portal sinus) are in plane. This module does
that for a whole sequence, streamed frame by frame (memory does not grow with its length):

1. **Read** (:func:`open_sequence`): a multi-frame DICOM (frames and calibration through
   :mod:`fetal_biometry.io.scans`), a video (mp4, avi, ... through OpenCV; the spacing must be
   given), or a ``.mha`` / ``.nrrd`` stack (SimpleITK; spacing from its header), read in
   chunks of about :data:`CHUNK_BYTES`.
2. **Classify** (:class:`SequenceClassifier`): the frames of a sequence share the probe
   geometry, so the resampling to the model's spacing, the beam directions, the fan and the
   net's input window are computed once. Only the grid points over the fan are scored (the
   window is the fan's bounding box, plus one grid point for the interpolation); with the
   ``rotate`` encoding each sector of beam angles is scored only over its own (rotated)
   bounding box. Frames go through Caffe :data:`BATCH` at a time. The class maps are
   exactly those of :meth:`fetal_biometry.inference.dense.DenseClassifier.classify_scan`.
3. **Score** each frame cheaply (:func:`landmark_score`): the confidence (mean probability)
   of the largest stomach-bubble and umbilical-vein components big enough to be landmarks.
   The :data:`CANDIDATES` best frames are measured in full (:func:`fetal_biometry.measure.biometry.measure`,
   a few hundred ms a frame, too slow for every frame) and get the **plane score**
   (:func:`plane_score`): the ellipse's support on its perimeter, its residual, and the
   landmarks' confidence counted only where they lie inside the abdomen.
4. **Choose** (:func:`choose`): the accepted plane with the highest plane score; else the best
   measured abdomen (a suboptimal plane, reported as not accepted); else no frame (-1), with
   the best candidate's reasons.

**With a segmenter** (:func:`analyse_segmented`) the map names the abdomen, so every frame gets
a plane score from its segmentation alone (:func:`frame_score`: the abdomen outline complete
inside the fan, its axis ratio, the stomach bubble and the umbilical vein inside it, and none of
the classes that mark a wrong level, heart, lungs and kidneys, when the model has them), smoothed
over neighbouring frames (:func:`smooth`) so that one noisy frame does not win. A first pass
segments every ``stride``-th frame; a second pass segments the frames around the best of them;
the ``candidates`` best frames by smoothed score are measured in full
(:func:`fetal_biometry.measure.abdomen.measure`) and chosen as above, by plane score times
smoothed frame score.

The benchmark's metrics are in :mod:`fetal_biometry.evaluation.metrics`, their evaluation over
simulated sweeps in :mod:`fetal_biometry.evaluation.sweeps`.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage

from fetal_biometry.labels import HEART, KIDNEY, LUNG, OUTSIDE, STOMACH, VEIN
from fetal_biometry.measure import abdomen, biometry
from fetal_biometry.measure.ellipse import ellipse_mask, normalized_radius, record as ellipse_record

if TYPE_CHECKING:  # only a type here: measuring needs no Caffe
    from fetal_biometry.inference.dense import SequenceClassifier


CANDIDATES = 8  # frames measured in full
#: The segmenter's frame choice, chosen on validation sweeps (simulator seed 302, 10 sweeps of 48
#: frames, see docs/sweeps.md): every frame segmented and no smoothing gave WFSS 0.82, smoothing
#: over 3 frames (1/4, 1/2, 1/4) 0.76, over 5 frames 0.66, every 2nd frame first 0.72: an optimal
#: window here is 2-4 frames wide, and smoothing let broader runs of near-misses win.
STRIDE = 1  # the first pass segments every STRIDE-th frame
SMOOTHING = (1.0,)  # weights of the frames around a frame (odd length, centred)
#: Classes of levels never chosen (a segmenter whose table lacks them never shows them), and
#: the share of the abdomen's region in them at which a frame scores 0.
WRONG_LEVEL = (HEART, LUNG, KIDNEY)
WRONG_LEVEL_SHARE = 0.1


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
    return _result(chosen_from, scores)


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


# --------------------------------------------------------------------------- the segmenter's frame choice

def _inside_confidence(labels: np.ndarray, probs: np.ndarray, region: np.ndarray, cls: int,
                       min_px: float) -> float:
    """Mean probability of ``cls`` over its pixels inside ``region`` when they are at least
    ``min_px`` (0: too few)."""
    inside = (labels == cls) & region
    return float(probs[cls][inside].mean()) if np.count_nonzero(inside) >= min_px else 0.0


def axis_ratio(region: np.ndarray) -> float:
    """Minor over major axis (0..1) of a region's second moments (0 for an empty region)."""
    rows, cols = np.nonzero(region)
    if len(rows) < 3:
        return 0.0
    eig = np.linalg.eigvalsh(np.cov(np.stack([cols, rows]).astype(float)))
    return float(math.sqrt(max(eig[0], 0.0) / eig[1])) if eig[1] > 0 else 0.0


def outline_complete(region: np.ndarray, labels: np.ndarray) -> float:
    """Share (0..1) of a region's border pixels away from the fan's edge and the image's: an
    abdomen cut by the edge of the view is incomplete."""
    border = region & ~ndimage.binary_erosion(region)
    if not border.any():
        return 0.0
    edge = labels == OUTSIDE
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    edge = ndimage.binary_dilation(edge, iterations=biometry.EDGE_MARGIN_PX)
    return float(1 - np.count_nonzero(border & edge) / np.count_nonzero(border))


def frame_score(labels: np.ndarray, probs: np.ndarray, spacing_mm: float,
                wrong_level: tuple[int, ...] = WRONG_LEVEL) -> dict:
    """The plane score (0..1) of one segmented frame, with its terms.

    ``labels`` (H, W) is a segmenter's map in dataset values, ``probs`` (K, H, W) its
    probabilities in the order of its class table (every table begins with the abdomen's eight,
    so the stomach bubble and the vein are at their values); ``wrong_level`` the classes that
    mark a level never to choose. The score is ``complete * roundness * (1 + stomach + vein) / 3
    * (1 - wrong)``: ``complete`` the abdomen outline's share away from the view's edge
    (:func:`outline_complete`; the region is :func:`fetal_biometry.measure.abdomen.abdomen_region`),
    ``roundness`` its axis ratio over
    :data:`~fetal_biometry.measure.biometry.MIN_PLANE_AXIS_RATIO` (at most 1), ``stomach`` and
    ``vein`` the mean probability of each landmark inside the abdomen (0 under its smallest
    credible area), ``wrong`` the share of the region in ``wrong_level`` classes over
    :data:`WRONG_LEVEL_SHARE` (at most 1). Zero when no abdomen of a plausible size is seen.
    """
    region = abdomen.abdomen_region(labels)
    pixel = spacing_mm ** 2
    terms = {"complete": 0.0, "axis_ratio": 0.0, "stomach": 0.0, "vein": 0.0, "wrong_level": 0.0}
    if np.count_nonzero(region) * pixel >= biometry.MIN_BODY_MM2:
        wrong = np.count_nonzero(np.isin(labels, wrong_level) & region) / np.count_nonzero(region)
        terms = {"complete": outline_complete(region, labels), "axis_ratio": axis_ratio(region),
                 "stomach": _inside_confidence(labels, probs, region, STOMACH, biometry.MIN_STOMACH_MM2 / pixel),
                 "vein": _inside_confidence(labels, probs, region, VEIN, biometry.MIN_VEIN_MM2 / pixel),
                 "wrong_level": float(wrong)}
    roundness = min(1.0, terms["axis_ratio"] / biometry.MIN_PLANE_AXIS_RATIO)
    wrong = min(1.0, terms["wrong_level"] / WRONG_LEVEL_SHARE)
    score = terms["complete"] * roundness * (1 + terms["stomach"] + terms["vein"]) / 3 * (1 - wrong)
    return {**{k: round(v, 4) for k, v in terms.items()}, "score": round(score, 4)}


def smooth(scores: np.ndarray, weights: tuple[float, ...] = SMOOTHING) -> np.ndarray:
    """Scores smoothed over neighbouring frames: a weighted mean over the window ``weights``
    (odd length, centred), renormalised where the window runs past either end; NaN (a frame not
    scored) counts as missing, not as zero."""
    scores = np.asarray(scores, float)
    w = np.asarray(weights, float)
    known = ~np.isnan(scores)
    total = np.convolve(np.where(known, scores, 0.0), w, mode="same")
    weight = np.convolve(known.astype(float), w, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan)


def _neighbourhoods(scores: np.ndarray, stride: int, count: int, keep: int,
                    weights: tuple[float, ...]) -> set[int]:
    """Frames of the second pass: the ``keep`` best first-pass frames by score smoothed over the
    first pass's own grid, and the frames within ``stride - 1`` of each."""
    scored = np.flatnonzero(~np.isnan(scores))
    smoothed = smooth(scores[scored], weights)
    best = scored[np.argsort(-smoothed, kind="stable")[:keep]]
    return {j for k in best for j in range(max(0, k - stride + 1), min(count, k + stride))}


def _segment_stream(segmenter: SequenceClassifier, frames: Iterable[np.ndarray],
                    take: Callable[[int], bool], skipped: bool = True) -> Iterator[tuple]:
    """(index, frame, probs, labels) of every frame in order (only those ``take`` takes unless
    ``skipped``); probs and labels None for a frame ``take`` skips. At most one batch of frames
    (and, with ``skipped``, those skipped between them) is held."""
    held: list[tuple[int, np.ndarray]] = []

    def flush():
        taken = [frame for k, frame in held if take(k)]
        results = iter(segmenter.classify(taken))
        for k, frame in held:
            yield (k, frame, *next(results)) if take(k) else (k, frame, None, None)
        held.clear()

    for k, frame in enumerate(frames):
        if skipped or take(k):
            held.append((k, frame))
        if take(k) and sum(take(j) for j, _ in held) == segmenter.batch:
            yield from flush()
    yield from flush()


def analyse_segmented(segmenter: SequenceClassifier, frames: Callable[[], Iterable[np.ndarray]],
                      spacing_mm: float, on_frame: Callable | None = None,
                      candidates: int = CANDIDATES, stride: int = STRIDE,
                      smoothing: tuple[float, ...] = SMOOTHING,
                      wrong_level: tuple[int, ...] = WRONG_LEVEL) -> SweepResult:
    """The segmenter's frame choice over a sequence (see the module docstring).

    ``segmenter`` segments the sequence's frames (a :class:`SequenceClassifier` of a
    segmenter); ``frames()`` streams the sequence afresh (it is read twice);
    ``on_frame(index, frame, labels, score)`` is called for every frame of the first pass
    (``labels`` and ``score`` None for a frame it skips); ``smoothing`` the weights of
    :func:`smooth`, ``wrong_level`` as :func:`frame_score`'s. Memory holds one batch and the
    second pass's frames, whatever the sequence's length.
    """
    scores: list[dict | None] = []
    for k, frame, probs, labels in _segment_stream(segmenter, frames(), lambda k: k % stride == 0):
        score = None if labels is None else frame_score(labels, probs, spacing_mm, wrong_level)
        scores.append(None if score is None else {"frame": k, **score})
        if on_frame is not None:
            on_frame(k, frame, labels, score)
    if not scores:
        raise ValueError("the sequence holds no frame")
    first = np.array([np.nan if s is None else s["score"] for s in scores])
    wanted = _neighbourhoods(first, stride, len(scores), candidates, smoothing)
    second = []
    for k, frame, probs, labels in _segment_stream(segmenter, frames(), wanted.__contains__, skipped=False):
        if labels is not None:
            score = frame_score(labels, probs, spacing_mm, wrong_level)
            scores[k] = {"frame": k, **score}
            second.append(Candidate(k, frame, labels, score))
    smoothed = smooth(np.array([np.nan if s is None else s["score"] for s in scores]), smoothing)
    for c in second:
        c.landmarks = {**c.landmarks, "smoothed": round(float(smoothed[c.index]), 4)}
    kept = sorted(sorted(second, key=lambda c: -c.landmarks["smoothed"])[:candidates], key=lambda c: c.index)
    for c in kept:
        c.measured = abdomen.measure(c.labels, spacing_mm)
        plane = plane_score(c.measured, c.landmarks)
        c.plane = {**plane, "plane_score": round(plane["plane_score"] * c.landmarks["smoothed"], 4)}
        c.landmarks = {**c.landmarks, "score": c.landmarks["smoothed"]}
        scores[c.index].update(c.plane, smoothed=c.landmarks["smoothed"], measured=True,
                               accepted=c.measured.accepted, reasons=list(c.measured.reasons))
    frames_record = [s if s is not None else {"frame": k, "score": None} for k, s in enumerate(scores)]
    return _result(kept, frames_record)


def _result(measured: list[Candidate], scores: list[dict]) -> SweepResult:
    """The chosen frame of measured candidates, and the record of :func:`analyse`."""
    chosen, best = choose(measured)
    m = best.measured
    record = {
        "best_frame": chosen.index if chosen else -1,
        "ac_mm": m.ac_mm if chosen else None,
        "plane_acceptable": bool(chosen and m.accepted),
        "reasons": list(m.reasons) if chosen else ["no frame fit to measure"] + list(m.reasons),
        "best_candidate": best.index,
        "ellipse": ellipse_record(m.ellipse) if chosen and m.ellipse is not None else None,
        "frames_measured": [c.index for c in measured],
        "frames": scores,
    }
    return SweepResult(record, chosen, best, measured)


def analyse_sequence(classifier: SequenceClassifier, frames: Callable[[], Iterable[np.ndarray]],
                     spacing_mm: float, count: int | None = None, on_frame: Callable | None = None,
                     candidates: int = CANDIDATES, stride: int = STRIDE, **choice) -> SweepResult:
    """The frame choice of ``classifier``'s kind: :func:`analyse_segmented` for a segmenter
    (``choice``: its ``smoothing`` and ``wrong_level``), :func:`analyse` (one pass, landmark
    scores; ``stride`` and ``choice`` unused) for a patch classifier."""
    if classifier.segmenter:
        return analyse_segmented(classifier, frames, spacing_mm, on_frame, candidates, stride, **choice)
    return analyse(classifier, frames(), spacing_mm, count, on_frame, candidates)
