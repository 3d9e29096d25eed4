"""The whole import (:func:`import_dataset`): every image read and built, every problem gathered, the
dataset written only when there are none."""
from __future__ import annotations

import math
import os
import pathlib
from typing import Iterable

from fetal_biometry import __version__, atomic, paths
from fetal_biometry.geometry import fan, probe as geom
from fetal_biometry.importers.annotation import (Annotation, AnnotationError, FAN_TOLERANCE_PX,
                                                 FORMATS, GENERATOR, TOOL, sha256)
from fetal_biometry.importers.build import Inputs, build_case, case_name, class_mapper
from fetal_biometry.importers.hc18 import read_spacing_csv
from fetal_biometry.importers.registry import Options, read_annotations
from fetal_biometry.io import dataset, dicom, scans


def _inputs(annotation: Annotation, options: Options, spacing: dict[str, float],
            warnings: list[str]) -> tuple[Inputs | None, list[str]]:
    """Image, spacing and geometry of one annotated image, or the problems in the way.

    The image is read by :func:`fetal_biometry.io.scans.read_scans` (``options.frame`` of a cine
    loop); a spacing from the CSV or ``--spacing`` is checked against a DICOM's calibration.
    """
    image_file, where = annotation.image, f"{annotation.file}: image {annotation.image.name}"
    try:  # never a file outside the images folder: '..', absolute names, symlinks out
        source = paths.inside(annotation.folder, image_file, annotation.file,
                              "the images (--images DIR, else the annotations' own folder)")
    except paths.OutsideFolder as error:
        return None, [str(error)]
    if not source.is_file():
        return None, [f"{where}: image file {image_file} not found"]
    given = spacing.get(image_file.name, options.spacing_mm)
    try:
        found = scans.read_scans(source, frame=options.frame, spacing=given)
        header = dicom.read_header(source) if found[0].region else None  # no pixels decoded
    except (scans.ScanError, ValueError) as error:
        return None, [f"{where}: {error}"]
    if len(found) > 1:
        return None, [f"{where}: holds {len(found)} calibrated scan regions "
                      f"({', '.join(s.name for s in found)}); annotate files of one scan"]
    scan = found[0]
    warnings += [f"{image_file.name}: {w}" for w in scan.warnings]
    problems = []
    if scan.region is not None:
        x0, y0, x1, y1 = scan.region
        if scan.gray.shape != (y1 - y0, x1 - x0):
            problems.append(f"{where}: its pixels are not square and were resampled; annotations "
                            "on the file's pixels cannot follow")
    if scan.spacing_mm is None:
        problems.append(f"{where}: no pixel spacing: list {image_file.name} in --spacing-csv "
                        "or give --spacing MM")
    probe = None
    if options.geometry is not None:
        try:
            file = (paths.inside(options.geometry, f"{image_file.stem}.json", options.geometry,
                                 "the probe geometries") if options.geometry.is_dir() else options.geometry)
            probe = geom.read_file(file, scan.gray.shape)
        except paths.OutsideFolder as error:
            problems.append(str(error))
        except ValueError as error:
            problems.append(f"{where}: probe geometry {error}")
    else:
        estimate = fan.probe_of(scan.rgb, scan.transducer, scan.reference_pixel,
                                accept_below=options.accept_fan_below)
        probe = estimate.geometry
        if probe is None:
            problems.append(f"{where}: {estimate.source}; pass --geometry FILE or "
                            "--accept-fan-below C")
        else:
            warnings.append(f"{image_file.name}: probe geometry {estimate.source}")
    if problems:
        return None, problems
    return Inputs(case_name(image_file), scan.gray, scan.spacing_mm, probe,
                  (header.columns, header.rows) if header else scan.gray.shape[::-1], scan.region), []


def _hashes(fmt: str, path: pathlib.Path, options: Options) -> dict[str, str]:
    """SHA-256 of every annotation file the import read, by name relative to ``path``."""
    if path.is_dir():
        pattern = {"labelme": "*.json", "masks": "*.png", "hc18": "*_Annotation.png"}[fmt]
        files = sorted(path.glob(pattern))
        names = {f.relative_to(path).as_posix(): f for f in files}
    else:
        names = {path.name: path}
    for extra in (options.values, options.classes, options.spacing_csv):
        if extra is not None and extra.is_file():
            names[extra.name] = extra
    return {name: sha256(file) for name, file in names.items()}


def claim_output(out: pathlib.Path, inputs: Iterable[pathlib.Path], overwrite: bool) -> list[str]:
    """Why ``out`` may not be written (:func:`fetal_biometry.atomic.claim_output`): a dataset
    made by something else than this importer (a simulated one, say) is never replaced."""
    try:
        atomic.claim_output(out, TOOL, inputs, overwrite, option="--out")
    except atomic.OutputError as error:
        return [str(error)]
    return []


def import_dataset(fmt: str, annotations: str | os.PathLike, out: str | os.PathLike,
                   options: Options = Options(), progress=None) -> tuple[pathlib.Path, list[str]]:
    """Import ``annotations`` (format ``fmt``) as a dataset at ``out``; returns it and warnings.

    Every image is read and built before anything is written; :class:`AnnotationError` lists
    every problem (each naming the annotation file, the image and the shape) and nothing is
    written. With ``options.skip_bad`` an image with problems (no fan, no spacing, a shape out
    of the fan, ...) is left out instead and the others are written; dataset.json's
    ``source.skipped`` lists each left-out image with its problems (problems of the whole
    import, such as an unreadable class map, still stop it, as does nothing left to write).
    ``out`` may be a new or empty folder or, with ``options.overwrite``, a dataset this
    importer made (replaced atomically); never an input or a folder holding one. ``progress`` wraps the list of
    annotations (e.g. tqdm).
    """
    try:
        return _import_dataset(fmt, pathlib.Path(annotations), pathlib.Path(out), options, progress)
    finally:
        atomic.release(out)  # the lock claim_output took on ``out``


def _import_dataset(fmt: str, path: pathlib.Path, out: pathlib.Path, options: Options,
                    progress) -> tuple[pathlib.Path, list[str]]:
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if not path.exists():
        raise AnnotationError(f"{path}: not found")
    inputs = [p for p in (path, options.images, options.geometry, options.spacing_csv) if p is not None]
    problems = claim_output(out, inputs, options.overwrite)
    classes, more = class_mapper(options.classes)
    problems += more
    spacing, circumference = {}, {}
    if options.spacing_csv is not None:
        spacing, circumference, more = read_spacing_csv(options.spacing_csv)
        problems += more
    found, more = read_annotations(fmt, path, options)
    problems += more
    tolerance = FAN_TOLERANCE_PX[fmt] if options.fan_tolerance_px is None else options.fan_tolerance_px
    warnings, cases, names, skipped = [], [], {}, []
    for annotation in (progress(found) if progress else found):
        ready, own = _inputs(annotation, options, spacing, warnings)
        case = None
        if ready is not None and ready.name in names:
            own.append(f"{annotation.file}: image {annotation.image.name}: case name {ready.name!r} "
                       f"also made from {names[ready.name]}: rename one image")
        elif ready is not None:
            names[ready.name] = annotation.image
            case, more = build_case(annotation, ready, classes, tolerance)
            own += more
        if own and options.skip_bad:
            skipped.append({"image": str(annotation.image), "annotations": str(annotation.file),
                            "reasons": own})
            continue
        problems += own
        if case is not None:
            cases.append(case)
            listed = circumference.get(annotation.image.name)
            if listed and abs(case.biometry.circumference_mm - listed) > 0.02 * listed:
                warnings.append(f"{annotation.image.name}: fitted HC {case.biometry.circumference_mm:.1f} mm "
                                f"differs from the CSV's {listed:.1f} mm")
    if not found and not problems:
        problems.append(f"{path}: no annotated images found")
    if found and not cases and skipped and not problems:
        problems.append(f"{path}: every image was skipped: " +
                        "; ".join(r for item in skipped for r in item["reasons"]))
    if problems:
        raise AnnotationError(f"{len(problems)} problem(s), nothing written:\n  " + "\n  ".join(problems))
    generator = {"name": GENERATOR, "version": __version__, "format": fmt,
                 "fan_tolerance_px": tolerance if math.isfinite(tolerance) else None,
                 "spacing": "csv" if spacing else f"{options.spacing_mm} mm" if options.spacing_mm else None,
                 "geometry": "given" if options.geometry else "estimated from each image"}
    source = {"format": fmt, "annotations": str(path), "sha256": _hashes(fmt, path, options)}
    if options.skip_bad:
        source["skipped"] = skipped
        warnings += [f"skipped {item['image']}: " + "; ".join(item["reasons"]) for item in skipped]
    dataset.write_dataset(out, cases, generator, source, tool=TOOL)
    return out, warnings
