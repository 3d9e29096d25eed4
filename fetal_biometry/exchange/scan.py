"""The DICOM objects of one measured scan, and where they are written.

For a scan read from a DICOM file: the SR of its measurements (when it has any), the SEG of its
class map, and for a cine loop the measured frame as an image of its own (the SEG's reference).
They go to ``OUT/dicom/STEM_sr.dcm``, ``STEM_seg.dcm`` and ``STEM_frame.dcm``, each atomically.
"""
from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

from fetal_biometry import atomic
from fetal_biometry.io import dicom
from fetal_biometry.exchange import codes, seg, source, sr
from fetal_biometry.exchange.algorithm import Algorithm
from fetal_biometry.labels import OUTSIDE

FOLDER = "dicom"  # inside a tool's output folder


def scan_objects(path: str | os.PathLike, frame: int | None, region, labels: np.ndarray,
                 record: dict, classes, algorithm: Algorithm) -> dict:
    """``{"sr": ..., "seg": ..., "frame": ...}`` (pydicom datasets) for the scan cut from frame
    ``frame`` (0-based; None for a single-frame file) and ``region`` ((x0, y0, x1, y1) or None:
    the whole frame) of the DICOM file ``path``; ``labels`` its class map on the scan's grid.

    Raises
    ------
    fetal_biometry.exchange.source.SourceError
        A file the objects cannot reference (no study, series or instance UID).
    """
    with source.quiet():
        return _objects(path, frame, region, labels, record, classes, algorithm)


def _objects(path, frame, region, labels, record, classes, algorithm) -> dict:
    header = source.read_source(path)
    loop = source.frames(header) > 1
    x0, y0, x1, y1 = region or (0, 0, int(header.Columns), int(header.Rows))
    crop = labels
    if labels.shape != (y1 - y0, x1 - x0):  # non-square pixels were resampled: back to the file's
        crop = cv2.resize(labels, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    full = np.zeros((int(header.Rows), int(header.Columns)), np.uint8)
    full[y0:y1, x0:x1] = np.where(crop == OUTSIDE, 0, crop)
    scale = ((x1 - x0) / labels.shape[1], (y1 - y0) / labels.shape[0])
    reference = sr.Reference(header, frame if loop else None, (x0, y0), scale)
    objects = {}
    image = header
    if loop:
        pixels = next(dicom.iter_frames(path, dicom.read_header(path), [frame]))
        image = objects["frame"] = seg.frame_image(header, frame, pixels)
    objects["seg"] = seg.segmentation(image, full, classes, algorithm)
    if sr.measured(record):
        objects["sr"] = sr.biometry_report(header, record, algorithm, [reference])
    return objects


def write_objects(out: str | os.PathLike, stem: str, objects: dict) -> list[str]:
    """Write ``objects`` as ``out/dicom/STEM_KIND.dcm``; returns their paths relative to ``out``."""
    written = []
    for kind, dataset in sorted(objects.items()):
        relative = pathlib.Path(FOLDER, f"{stem}_{kind}.dcm")
        with atomic.staged_file(pathlib.Path(out, relative)) as tmp, source.quiet():
            dataset.save_as(tmp, enforce_file_format=True)
        written.append(str(relative))
    return written


def exam_objects(scans: list[tuple], panel: dict, algorithm: Algorithm) -> dict:
    """``{"sr": ...}``: the SR of an exam's panel (``infer.json``'s ``"panel"``) over its scans,
    ``(path, frame)`` each (frame None for a single-frame file); {} when the panel measured
    nothing.

    Raises
    ------
    fetal_biometry.exchange.source.SourceError
        A file the SR cannot reference, or scans of more than one study (an SR reports one).
    """
    record = codes.record_from_panel(panel)
    if not sr.measured(record):
        return {}
    with source.quiet():
        headers = [(source.read_source(path), frame) for path, frame in scans]
        studies = {header.StudyInstanceUID for header, _ in headers}
        if len(studies) > 1:
            raise source.SourceError(f"the scans belong to {len(studies)} studies, and an SR reports "
                                     "one: give one study's scans at a time")
        references = [sr.Reference(h, frame if source.frames(h) > 1 else None) for h, frame in headers]
        return {"sr": sr.biometry_report(headers[0][0], record, algorithm, references)}
