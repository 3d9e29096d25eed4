"""The one reader of scan files for every tool: PNG, JPEG, ... or DICOM -> scans.

A scan file may hold more than one scan: a DICOM dual (or quad) display has one calibrated 2D
tissue region per image, and each becomes a :class:`ScanImage` of its own, cropped to its
region and named ``STEM_r0``, ``STEM_r1``, ... (or one chosen with ``region``). A cine loop
holds many frames: one is chosen with ``frame`` (:func:`read_scans`) or all are read one by
one (:func:`iter_frames`), never the whole loop at once.

The pixel spacing comes, in this order, from the scan's ultrasound region (PhysicalDeltaX/Y),
the file's PixelSpacing, its ImagerPixelSpacing (less reliable: the detector's, not the
patient's, so a given spacing overrides it), the ``spacing`` given by the caller, or nowhere
(then no measurement in mm can be made). Each scan records which as ``spacing_source``. A
given spacing that disagrees with the file's calibration by more than :data:`AGREEMENT` is
an error giving both numbers. Pixels that are not square (the x and y deltas differ by more
than :data:`AGREEMENT`) are resampled to the finer of the two, with a warning.

Nothing that identifies a patient, institution or operator is read (:mod:`fetal_biometry.io.dicom`).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import struct
from typing import Iterator

import cv2
import numpy as np

from fetal_biometry.io import dicom, limits

AGREEMENT = 0.01  # relative difference below which two spacings (or deltas) are the same
SOURCES = ("ultrasound region", "PixelSpacing", "ImagerPixelSpacing", "given", "none")


class ScanError(ValueError):
    """A scan file that cannot be read as asked; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class ScanImage:
    """One scan as displayed, cropped to its calibrated region.

    Attributes
    ----------
    name : file stem (a DICOM's: a hash of its SOP Instance UID unless the caller keeps file
        names), or ``STEM_rK`` for the K-th of several calibrated 2D tissue regions
    rgb : (H, W, 3) uint8, as displayed
    gray : (H, W) uint8, ITU-R 601 luma of ``rgb``
    spacing_mm : mm per (square) pixel, or None when unknown
    spacing_source : one of :data:`SOURCES`
    region : (x0, y0, x1, y1) of the crop in the file's frame (x1, y1 exclusive), or None
        when the scan is the whole frame
    warnings : what the user should know (burned-in annotation, resampling, weak calibration)
    reference_pixel : the region's ReferencePixelX0/Y0 in the scan's pixels (often a sector's
        apex), or None
    transducer : the file's TransducerType (or TransducerData), or None
    """

    name: str
    rgb: np.ndarray
    gray: np.ndarray
    spacing_mm: float | None
    spacing_source: str
    region: tuple[int, int, int, int] | None
    warnings: tuple[str, ...]
    reference_pixel: tuple[float, float] | None = None
    transducer: str | None = None


@dataclasses.dataclass(frozen=True)
class _View:
    """How to cut one scan out of a frame: crop, resampled size, spacing and its source."""

    name: str
    region: tuple[int, int, int, int] | None
    size: tuple[int, int] | None  # (width, height) to resample the crop to, None: as is
    spacing_mm: float | None
    spacing_source: str
    warnings: tuple[str, ...]
    reference_pixel: tuple[float, float] | None = None  # in the region's pixels
    transducer: str | None = None

    def cut(self, frame: np.ndarray) -> ScanImage:
        rgb = frame
        if self.region is not None:
            x0, y0, x1, y1 = self.region
            rgb = frame[y0:y1, x0:x1]
        reference = self.reference_pixel
        if self.size is not None:
            if reference is not None:  # resampled with the crop
                reference = (reference[0] * self.size[0] / rgb.shape[1],
                             reference[1] * self.size[1] / rgb.shape[0])
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_LINEAR)
        rgb = np.ascontiguousarray(rgb)
        return ScanImage(self.name, rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.spacing_mm,
                         self.spacing_source, self.region, self.warnings, reference, self.transducer)


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= AGREEMENT * max(a, b)


def _square(delta: tuple[float, float], width: int,
            height: int) -> tuple[float, tuple[int, int] | None, list[str]]:
    """Isotropic spacing for pixels of ``delta`` (x, y) mm, the size to resample a
    ``width`` x ``height`` crop to (None: already square) and the warning that says so."""
    dx, dy = delta
    if _agree(dx, dy):
        return (dx + dy) / 2, None, []
    fine = min(dx, dy)
    size = max(1, round(width * dx / fine)), max(1, round(height * dy / fine))
    return fine, size, [f"pixels are not square ({dx:.4g} mm wide, {dy:.4g} mm high): resampled "
                        f"from {width}x{height} to {size[0]}x{size[1]} at {fine:.4g} mm"]


def _calibrate(delta: tuple[float, float] | None, source: str, given: float | None,
               width: int, height: int) -> tuple[float | None, str, tuple[int, int] | None, list[str]]:
    """Spacing, its source, the resampled size and warnings, from the file's ``delta`` (x, y)
    of ``source`` and the caller's ``given`` spacing (ValueError when they disagree)."""
    if delta is None:
        return given, "given" if given else "none", None, []
    for value in delta:
        try:
            limits.check_spacing(value)
        except limits.BudgetError as error:
            raise ValueError(f"its {source} ({delta[0]:g} x {delta[1]:g} mm) is no ultrasound "
                             f"calibration: {error}") from None
    spacing, size, notes = _square(delta, width, height)
    if size is not None:
        try:  # the square-pixel copy is made only within the budget
            limits.check_frames(*size)
        except limits.BudgetError as error:
            raise ValueError(f"square pixels from its {source} would make it {error}") from None
    if given is None or _agree(given, spacing):
        if source == "ImagerPixelSpacing":
            notes.append("spacing from ImagerPixelSpacing, the detector's pixel size: less "
                         "reliable than an ultrasound region's calibration; check it or pass --spacing")
        return spacing, source, size, notes
    if source == "ImagerPixelSpacing":
        return given, "given", None, [f"--spacing {given:g} mm used instead of the file's "
                                      f"ImagerPixelSpacing {spacing:.4g} mm"]
    raise ValueError(f"--spacing {given:g} mm disagrees with the file's calibration "
                     f"({source}: {spacing:.4g} mm) by more than {AGREEMENT:.0%}; "
                     "leave --spacing out to use the file's")


def _views(stem: str, header: dicom.Header, region: int | None, spacing: float | None) -> list[_View]:
    """The scans of a DICOM file (one per 2D tissue region, or the whole frame)."""
    notes = header.warnings()
    if header.regions and not header.tissue_regions():
        kinds = ", ".join(r.describe() for r in header.regions)
        raise ValueError(f"no 2D tissue region among the file's ultrasound regions ({kinds}): "
                         "not a B-mode image")
    regions = header.tissue_regions()
    chosen = regions
    if region is not None:
        if not regions:
            raise ValueError(f"no region {region}: the file has no calibrated 2D tissue regions")
        if not 0 <= region < len(regions):
            raise ValueError(f"no region {region}: the file has {len(regions)} calibrated 2D "
                             f"tissue regions (0 to {len(regions) - 1})")
        chosen = [regions[region]]
    if not chosen:  # no ultrasound regions: the whole frame, PixelSpacing if any
        delta, source = ((header.pixel_spacing, "PixelSpacing") if header.pixel_spacing else
                         (header.imager_spacing, "ImagerPixelSpacing"))
        value, source, size, more = _calibrate(delta, source, spacing, header.columns, header.rows)
        if source == "none":
            more.append("no calibration in the file (no ultrasound region, PixelSpacing or "
                        "ImagerPixelSpacing): no measurement in mm without --spacing")
        return [_View(stem, None, size, value, source, tuple(notes + more), None, header.transducer)]
    views = []
    for item in chosen:
        bounds, own = _clip(item.bounds, header.columns, header.rows, item.describe())
        width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
        if item.delta_mm is not None:
            delta, source = item.delta_mm, "ultrasound region"
        else:  # a tissue region without length units: fall back to the file's spacing
            delta, source = ((header.pixel_spacing, "PixelSpacing") if header.pixel_spacing else
                             (header.imager_spacing, "ImagerPixelSpacing"))
            own.append(f"{item.describe()} has no physical deltas in cm "
                           f"(units {item.units[0]}, {item.units[1]})")
        value, source, size, more = _calibrate(delta, source, spacing, width, height)
        name = stem if len(regions) == 1 else f"{stem}_r{regions.index(item)}"
        reference = item.reference_pixel
        if reference is not None:  # relative to the region's corner; the crop may be clipped
            reference = (reference[0] + item.bounds[0] - bounds[0], reference[1] + item.bounds[1] - bounds[1])
        views.append(_View(name, bounds, size, value, source, tuple(notes + own + more), reference,
                           header.transducer))
    return views


def _clip(bounds, width: int, height: int, what: str) -> tuple[tuple[int, int, int, int], list[str]]:
    x0, y0, x1, y1 = bounds
    inside = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if inside[2] - inside[0] < 2 or inside[3] - inside[1] < 2:
        raise ValueError(f"{what} ({x0}, {y0})-({x1 - 1}, {y1 - 1}) lies outside the "
                         f"{width}x{height} image")
    if inside != tuple(bounds):
        return inside, [f"{what} reaches beyond the {width}x{height} image: clipped to it"]
    return inside, []


def read_frame(path: str | os.PathLike, frame: int | None = None) -> np.ndarray:
    """The whole frame of an image or DICOM file as displayed, (H, W, 3) uint8 RGB.

    Image files (PNG, JPEG, TIFF, ...) deeper than 8 bits are scaled to 8 (:func:`read_image`);
    DICOM as :func:`fetal_biometry.io.dicom.read_frame`. ValueError (not naming the file: the
    caller does) if the file is unreadable, or is a cine loop and ``frame`` is not given.
    """
    if dicom.is_dicom(path):
        return dicom.read_frame(path, frame)[0]
    if frame not in (None, 0):
        raise ValueError(f"no frame {frame}: an image file has one frame (0)")
    return read_image(pathlib.Path(path))[0]


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB or gray uint8 array (a scan, a class map, a picture)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array)
    if not ok:
        raise OSError("could not encode the PNG")
    return data.tobytes()


def read_image(path: pathlib.Path) -> tuple[np.ndarray, list[str]]:
    """An image file as displayed, (H, W, 3) uint8 RGB, and what was lost on the way.

    Its size is read from the header and held to :mod:`fetal_biometry.io.limits` before OpenCV
    decodes it. Deeper pixels are scaled to 8 bits by their stored depth: the PNG's sBIT chunk
    where present, else the full range of the type, with a warning where the data use only
    a small part of it (never by the image's own range: a loop's frames would flicker).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    image = imread(path)
    if image is None:
        raise ValueError("not a readable image (PNG, JPEG, ...) nor a DICOM file")
    notes = []
    if image.dtype != np.uint8:
        bits, notes = _stored_bits(path, image)
        image = dicom.to_uint8(image, bits)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), notes
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB), notes


def imread(source: pathlib.Path | bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """OpenCV's ``imread`` of a file (``imdecode`` of bytes), once the size its header declares
    is within :mod:`fetal_biometry.io.limits`; None where it is no image OpenCV reads. ValueError
    (not naming the file: the caller does) for too large an image, or OpenCV's own error."""
    _check_image_size(source)
    try:
        if isinstance(source, bytes):
            return cv2.imdecode(np.frombuffer(source, np.uint8), flags)
        return cv2.imread(str(source), flags)
    except cv2.error as error:
        raise ValueError(f"OpenCV cannot decode it ({str(error).strip().splitlines()[-1]})") from None


def _check_image_size(source: pathlib.Path | bytes) -> None:
    """The budget on the size an image's header declares, read without decoding (Pillow)."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: the budget speaks
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ValueError("a decompression bomb: it declares far more pixels than the limit of "
                         f"{limits.MAX_FRAME_PIXELS / 1e6:.1f} megapixels") from None
    except (OSError, ValueError, SyntaxError):
        return  # not for Pillow: OpenCV tries it, and says so if it cannot
    try:
        limits.check_frames(width, height)
    except limits.BudgetError as error:
        raise ValueError(f"the image is {error}") from None


def _stored_bits(path: pathlib.Path, image: np.ndarray) -> tuple[int, list[str]]:
    """Significant bits of a deeper-than-8-bit image and the warnings its scaling earns."""
    if not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"pixel type {image.dtype} is not supported")
    full = 8 * image.dtype.itemsize
    bits = _png_sbit(path)
    if bits is not None and 8 < bits <= full:
        return bits, [f"{bits}-bit pixels (the PNG's sBIT) scaled to 8 bits: finer grey levels are lost"]
    used = int(image.max()).bit_length()
    notes = [f"{full}-bit pixels scaled to 8 bits over the type's full range: finer grey levels are lost"]
    if used <= full - 4:
        notes.append(f"the pixels use only {used} of {full} bits (largest value {int(image.max())}) "
                     f"and the file does not say how many are significant (no PNG sBIT chunk): "
                     "the image comes out dark; convert it to 8 bits, or add sBIT")
    return full, notes


def _png_sbit(path: pathlib.Path) -> int | None:
    """The significant bits a PNG's sBIT chunk gives (the largest of its channels), or None."""
    with open(path, "rb") as file:
        if file.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while True:
            head = file.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"sBIT":
                return max(file.read(length)) if length else None
            if kind in (b"IDAT", b"IEND") or length > 1 << 20:
                return None  # sBIT comes before the image data
            file.seek(length + 4, os.SEEK_CUR)


def _image_view(path: pathlib.Path, region: int | None, spacing: float | None,
                notes: list[str]) -> _View:
    if region is not None:
        raise ValueError(f"no region {region}: an image file has no calibrated regions")
    return _View(path.stem, None, None, spacing, "given" if spacing else "none", tuple(notes))


def _check(path: pathlib.Path, spacing: float | None) -> None:
    if not path.is_file():
        raise ScanError(f"{path}: no such file")
    if spacing is not None and not (np.isfinite(spacing) and spacing > 0):
        raise ScanError(f"{path}: --spacing must be a positive number of mm, got {spacing}")


def frame_count(path: str | os.PathLike) -> int:
    """How many frames the file holds (1 for an image file)."""
    path = pathlib.Path(path)
    _check(path, None)
    if not dicom.is_dicom(path):
        return 1
    try:
        return dicom.read_header(path).frames
    except ValueError as error:
        raise ScanError(f"{path}: {error}") from None


def read_scans(path: str | os.PathLike, frame: int | None = None, region: int | None = None,
               spacing: float | None = None, keep_name: bool = False) -> list[ScanImage]:
    """The scans in an image or DICOM file.

    Parameters
    ----------
    path : PNG, JPEG, ... or DICOM file (``.dcm`` or any name with the DICOM preamble)
    frame : the frame of a cine loop (from 0); required when the file holds several
    region : the K-th calibrated 2D tissue region only (from 0); default: every one
    spacing : mm per pixel, for files without calibration (checked against theirs)
    keep_name : name a DICOM file's scans after the file (default: after a hash of its SOP
        Instance UID, :meth:`fetal_biometry.io.dicom.Header.scan_name`: a scanner's file name
        may be the patient's)

    Returns
    -------
    list of ScanImage
        One per 2D tissue region of the file (non-tissue regions such as M-mode or Doppler
        strips are skipped), or one for the whole frame.

    Raises
    ------
    ScanError
        The file is missing, unreadable or damaged; a cine loop without ``frame``; no such
        frame or region; a ``spacing`` that disagrees with the file's calibration.
    """
    path = pathlib.Path(path)
    _check(path, spacing)
    try:
        if not dicom.is_dicom(path):
            if frame not in (None, 0):
                raise ValueError(f"no frame {frame}: an image file has one frame (0)")
            image, notes = read_image(path)
            return [_image_view(path, region, spacing, notes).cut(image)]
        image, header = dicom.read_frame(path, frame)
        stem = path.stem if keep_name else header.scan_name()
        return [view.cut(image) for view in _views(stem, header, region, spacing)]
    except ValueError as error:  # DicomError is one
        raise ScanError(f"{path}: {error}") from None


def iter_frames(path: str | os.PathLike, region: int | None = None,
                spacing: float | None = None, keep_name: bool = False) -> Iterator[ScanImage]:
    """Every frame of a file, one by one (a cine loop is never decoded whole), as the scan of
    one region: ``region`` is required where the file has several calibrated regions.

    Raises
    ------
    ScanError
        As :func:`read_scans`; also several regions and none chosen.
    """
    path = pathlib.Path(path)
    _check(path, spacing)
    try:
        if not dicom.is_dicom(path):
            image, notes = read_image(path)
            yield _image_view(path, region, spacing, notes).cut(image)
            return
        header = dicom.read_header(path)
        views = _views(path.stem if keep_name else header.scan_name(), header, region, spacing)
        if len(views) > 1:
            raise ValueError(f"{len(views)} calibrated 2D tissue regions: choose one with "
                             f"--region K, 0 to {len(views) - 1}")
        for image in dicom.iter_frames(path, header):
            yield views[0].cut(image)
    except ValueError as error:
        raise ScanError(f"{path}: {error}") from None
