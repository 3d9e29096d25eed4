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

from fetal_biometry.labels import OUTSIDE, STOMACH, VEIN
from fetal_biometry.measure import biometry
from fetal_biometry.measure.ellipse import ellipse_mask, normalized_radius, record as ellipse_record

if TYPE_CHECKING:  # only a type here: measuring needs no Caffe
    from fetal_biometry.inference.dense import SequenceClassifier


CANDIDATES = 8  # frames measured in full


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
    chosen, best = choose(chosen_from)
    m = best.measured
    record = {
        "best_frame": chosen.index if chosen else -1,
        "ac_mm": m.ac_mm if chosen else None,
        "plane_acceptable": bool(chosen and m.accepted),
        "reasons": list(m.reasons) if chosen else ["no frame fit to measure"] + list(m.reasons),
        "best_candidate": best.index,
        "ellipse": ellipse_record(m.ellipse) if chosen and m.ellipse is not None else None,
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
