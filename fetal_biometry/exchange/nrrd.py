"""Class maps and probabilities as NRRD, for research viewers (3D Slicer, ITK-SNAP).

Each file carries the scan's pixel spacing and its origin in the source frame (mm, the centre of
the first pixel), so the scan, its class map and its probabilities open one over the other,
and over the whole frame of a multi-region file at the crop's place. The class map keeps the
values of ``STEM_labels.png`` (255 outside the fan); its header names each class
(``class_1:=amniotic_fluid``, ...).
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from fetal_biometry import atomic


def _write(image, path: pathlib.Path) -> None:
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.SetImageIO("NrrdImageIO")  # the staged name has no .nrrd suffix to go by
    writer.UseCompressionOn()
    with atomic.staged_file(path) as tmp:
        writer.SetFileName(str(tmp))
        writer.Execute(image)


def write_nrrd(out: str | os.PathLike, stem: str, gray: np.ndarray, labels: np.ndarray,
               probs: np.ndarray, spacing_mm: float, origin_mm: tuple[float, float],
               classes) -> list[str]:
    """Write ``STEM_scan.nrrd`` (uint8), ``STEM_labels.nrrd`` (uint8) and ``STEM_probs.nrrd``
    (a float32 vector of K classes per pixel) into ``out``; returns their names."""
    import SimpleITK as sitk

    images = {"scan": sitk.GetImageFromArray(np.ascontiguousarray(gray, np.uint8)),
              "labels": sitk.GetImageFromArray(np.ascontiguousarray(labels, np.uint8)),
              "probs": sitk.GetImageFromArray(np.ascontiguousarray(probs.transpose(1, 2, 0), np.float32),
                                              isVector=True)}
    for value, name in enumerate(classes):
        images["labels"].SetMetaData(f"class_{value}", name)
        images["probs"].SetMetaData(f"component_{value}", name)
    images["labels"].SetMetaData("class_255", "outside the fan")
    names = []
    for kind, image in images.items():
        image.SetSpacing((float(spacing_mm), float(spacing_mm)))
        image.SetOrigin(tuple(float(v) for v in origin_mm))
        names.append(f"{stem}_{kind}.nrrd")
        _write(image, pathlib.Path(out, names[-1]))
    return names


def origin_mm(region, shape: tuple[int, int], spacing_mm: float) -> tuple[float, float]:
    """The physical place (mm) of a scan's first pixel in its source frame: a crop at ``region``
    ((x0, y0, x1, y1), None: the whole frame) of ``shape`` (rows, columns) pixels at
    ``spacing_mm`` (the crop resampled to square pixels where the file's were not)."""
    if region is None:
        return 0.0, 0.0
    x0, y0, x1, y1 = region
    return (x0 * spacing_mm * shape[1] / (x1 - x0), y0 * spacing_mm * shape[0] / (y1 - y0))
