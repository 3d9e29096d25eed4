"""Ultrasound DICOM files: decoding, frames, calibration regions, privacy.

Decoding goes through pydicom's pixel plugins (pinned in requirements.txt): native (implicit,
explicit and deflated little endian), RLE (pydicom, pylibjpeg-rle), JPEG baseline, extended
and lossless (pylibjpeg-libjpeg, Pillow), JPEG-LS (pyjpegls, pylibjpeg-libjpeg) and JPEG 2000
(pylibjpeg-openjpeg, Pillow). Every frame comes out as displayed, 8-bit RGB: pydicom converts
YBR_FULL / YBR_FULL_422 to RGB itself (they are not converted again here), PALETTE COLOR
goes through its 8- or 16-bit lookup table, MONOCHROME1 is inverted, stored values of more than
8 bits are scaled by BitsStored.

Frames are decoded one at a time straight from the file (pydicom reads only that frame's
bytes), so a cine loop is never in memory whole; deflated files are the exception, since
they must be inflated as a whole to be read at all.

Calibration: scanners describe what each part of the screen shows in
SequenceOfUltrasoundRegions. A region holds 2D tissue when RegionSpatialFormat is 1 (2D) and
RegionDataType is 1 (tissue); its PhysicalDeltaX/Y (in PhysicalUnitsX/YDirection, 3 = cm)
give the pixel size. M-mode and Doppler strips (other formats and data types, time or
velocity units) are other regions and are not scans.

Privacy: :func:`read_header` reads only the image-pixel, calibration and annotation attributes
(pydicom's ``specific_tags``): patient, institution and operator attributes are never parsed,
so nothing here can pass them on. BurnedInAnnotation YES becomes a warning, for the pixels
themselves may show a name.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import warnings
from typing import Iterable, Iterator

import numpy as np

from fetal_biometry.io import limits

CM = 3  # PhysicalUnits code of centimetres
TISSUE, COLOUR_FLOW = 1, 2  # RegionDataType
SPATIAL_2D = 1  # RegionSpatialFormat
PLUGINS = "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls"
_FORMATS = {0: "none", 1: "2D", 2: "M-mode", 3: "spectral", 4: "waveform", 5: "graphics"}
_DATA_TYPES = {1: "tissue", 2: "colour flow", 3: "PW Doppler", 4: "CW Doppler", 5: "Doppler mean",
               6: "Doppler mode", 7: "Doppler max", 8: "volume trace", 9: "Doppler volume"}
_PALETTE = [f"{colour}PaletteColorLookupTable{part}" for colour in ("Red", "Green", "Blue")
            for part in ("Descriptor", "Data")] + [
           f"Segmented{colour}PaletteColorLookupTableData" for colour in ("Red", "Green", "Blue")]
# The only attributes read: pixel layout, calibration, burned-in annotation, palette.
_TAGS = ["Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
         "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
         "SequenceOfUltrasoundRegions", "PixelSpacing", "ImagerPixelSpacing",
         "BurnedInAnnotation", "SOPInstanceUID", "TransducerType", "TransducerData", *_PALETTE]


class DicomError(ValueError):
    """A DICOM file that cannot be used; the message says why (the caller names the file)."""


@dataclasses.dataclass(frozen=True)
class Region:
    """One item of SequenceOfUltrasoundRegions.

    ``bounds`` (x0, y0, x1, y1) in pixels, x1 and y1 exclusive (DICOM's RegionLocationMax + 1);
    ``delta_mm`` (x, y) mm per pixel where both directions are in cm, else None.
    ``reference_pixel`` (ReferencePixelX0/Y0) is relative to the region's top-left corner: the
    origin of its physical coordinates, for a sector scan often the transducer (the apex).
    """

    index: int
    bounds: tuple[int, int, int, int]
    spatial_format: int
    data_type: int
    units: tuple[int, int]
    delta_mm: tuple[float, float] | None
    reference_pixel: tuple[float, float] | None = None  # ReferencePixelX0/Y0, in the region

    @property
    def tissue(self) -> bool:
        return self.spatial_format == SPATIAL_2D and self.data_type == TISSUE

    def describe(self) -> str:
        return (f"region {self.index} ({_FORMATS.get(self.spatial_format, self.spatial_format)}, "
                f"{_DATA_TYPES.get(self.data_type, self.data_type)})")


@dataclasses.dataclass(frozen=True)
class Header:
    """What a DICOM file says about its pixels; no attribute that identifies anyone."""

    rows: int
    columns: int
    frames: int
    photometric: str
    bits_stored: int
    syntax: str  # the transfer syntax's name
    regions: tuple[Region, ...]
    pixel_spacing: tuple[float, float] | None  # (x, y) mm, from PixelSpacing
    imager_spacing: tuple[float, float] | None  # (x, y) mm, from ImagerPixelSpacing
    burned_in: bool
    transducer: str | None  # TransducerType (e.g. SECTOR_PHASED, CURVED LINEAR, LINEAR), else TransducerData
    attributes: object = dataclasses.field(repr=False, compare=False)  # the pydicom subset read

    def tissue_regions(self) -> list[Region]:
        """The 2D tissue regions, in file order; where the file lists none, its 2D colour-flow
        regions (colour Doppler images, whose tissue lies under the colour)."""
        regions = [r for r in self.regions if r.tissue]
        return regions or [r for r in self.regions
                           if r.spatial_format == SPATIAL_2D and r.data_type == COLOUR_FLOW]

    def scan_name(self) -> str:
        """A name for this file's scans that reveals nothing of it: a hash of its SOP Instance
        UID (scanners often name files after the patient; the UID identifies the image only)."""
        uid = str(self.attributes.get("SOPInstanceUID", "")).strip()
        return "dcm-" + hashlib.sha256(uid.encode()).hexdigest()[:16] if uid else "dcm-no-uid"

    def warnings(self) -> list[str]:
        found = []
        if self.burned_in:
            found.append("BurnedInAnnotation is YES: the pixels may show the patient's name or "
                         "other identifying text")
        if self.bits_stored > 8:  # the scaling is by BitsStored, never by a frame's own range
            found.append(f"{self.bits_stored}-bit pixels (BitsStored) scaled to 8 bits: finer "
                         "grey levels are lost")
        return found


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM file: named ``*.dcm`` or holding the DICM preamble marker
    (scanners often write files without an extension)."""
    path = pathlib.Path(path)
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def to_uint8(array: np.ndarray, bits: int) -> np.ndarray:
    """Integer values of ``bits`` bits scaled to 0-255 (uint8 passes unchanged)."""
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise DicomError(f"pixel type {array.dtype} is not supported")
    return np.rint(array.astype(np.float64) * (255 / (2 ** bits - 1))).clip(0, 255).astype(np.uint8)


def _pair(value, order: str) -> tuple[float, float] | None:
    """(x, y) mm from a DICOM spacing pair; ``order`` "yx" for PixelSpacing (row, column)."""
    if value is None or len(value) != 2:
        return None
    pair = tuple(float(v) for v in value)
    if not all(np.isfinite(pair)) or min(pair) <= 0:
        return None
    return (pair[1], pair[0]) if order == "yx" else pair


def _region(index: int, item) -> Region:
    def number(name: str, default=0):
        value = item.get(name)
        return default if value is None else value

    bounds = tuple(int(number(n)) for n in ("RegionLocationMinX0", "RegionLocationMinY0",
                                             "RegionLocationMaxX1", "RegionLocationMaxY1"))
    units = int(number("PhysicalUnitsXDirection")), int(number("PhysicalUnitsYDirection"))
    delta = abs(float(number("PhysicalDeltaX"))), abs(float(number("PhysicalDeltaY")))
    calibrated = units == (CM, CM) and min(delta) > 0 and all(np.isfinite(delta))
    reference = item.get("ReferencePixelX0"), item.get("ReferencePixelY0")
    return Region(index, (bounds[0], bounds[1], bounds[2] + 1, bounds[3] + 1),
                  int(number("RegionSpatialFormat")), int(number("RegionDataType")), units,
                  (delta[0] * 10, delta[1] * 10) if calibrated else None,
                  None if None in reference else (float(reference[0]), float(reference[1])))


def _transducer(ds) -> str | None:
    """TransducerType, else the first of TransducerData (free text), upper case; None if absent."""
    value = ds.get("TransducerType") or ds.get("TransducerData")
    if value is None:
        return None
    if not isinstance(value, str):  # a multi-valued element
        value = next(iter(value), "")
    return str(value).strip().upper() or None


def read_header(path: str | os.PathLike) -> Header:
    """The pixel layout, calibration and annotation flag of a DICOM file, without its pixels.

    Raises
    ------
    DicomError
        Not a DICOM file, or one without an image.
    """
    import pydicom  # imported here: only DICOM input needs it

    try:
        with warnings.catch_warnings():  # pydicom's warnings may quote attribute values
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
            meta = ds.file_meta
            syntax = meta.get("TransferSyntaxUID") if meta is not None else None
            if syntax is None:
                raise DicomError("unreadable DICOM: no transfer syntax in its file meta information")
            rows, columns = int(ds.Rows), int(ds.Columns)
            frames = int(ds.get("NumberOfFrames") or 1)
            # Bytes of pixel data declared (YBR_FULL_422 keeps two samples a pixel natively).
            samples = 2 if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422" \
                else int(ds.get("SamplesPerPixel") or 1)
            declared = rows * columns * frames * samples * max(1, int(ds.get("BitsAllocated") or 8) // 8)
            kind = pydicom.uid.UID(syntax)
            compressed = not kind.is_transfer_syntax or kind.is_compressed or kind.is_deflated
            items = ds.get("SequenceOfUltrasoundRegions") or ()
            regions = tuple(_region(i, item) for i, item in enumerate(items))
            header = Header(rows, columns, frames, str(ds.PhotometricInterpretation).strip(),
                            int(ds.BitsStored), pydicom.uid.UID(syntax).name, regions,
                            _pair(ds.get("PixelSpacing"), "yx"), _pair(ds.get("ImagerPixelSpacing"), "yx"),
                            str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES",
                            _transducer(ds), ds)
    except DicomError:
        raise
    except AttributeError as error:
        raise DicomError(f"unreadable DICOM: no image ({error})") from None
    except Exception as error:  # pydicom raises many types for broken files
        raise DicomError(f"unreadable DICOM: {error}") from None
    if min(rows, columns) < 1 or frames < 1:
        raise DicomError(f"unreadable DICOM: {columns}x{rows} pixels in {frames} frames")
    try:  # budgets on the declared sizes, before any pixel is decoded
        limits.check_frames(columns, rows, frames)
        limits.check_bytes(declared, os.path.getsize(path), compressed)
    except limits.BudgetError as error:
        raise DicomError(f"{columns}x{rows} pixels in {frames:,} frame(s): {error}") from None
    return header


def _decoder_problem(syntax_uid) -> str | None:
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax_uid)
    except NotImplementedError:
        return f"transfer syntax {syntax_uid.name} ({syntax_uid}) has no pixel decoder"
    if not decoder.is_available:
        return (f"no installed decoder for {syntax_uid.name} ({syntax_uid}): install the pinned "
                f"requirements (pip install -r requirements.txt: {PLUGINS})")
    return None


def _display(array: np.ndarray, header: Header) -> np.ndarray:
    """A decoded frame as displayed: (H, W, 3) uint8 RGB."""
    if header.photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        lut_bits = int(header.attributes.RedPaletteColorLookupTableDescriptor[2])
        return to_uint8(apply_color_lut(array, header.attributes)[..., :3], lut_bits)
    if array.ndim == 3:  # RGB, or YBR already converted to RGB by pydicom
        return to_uint8(array[..., :3], header.bits_stored)
    if np.issubdtype(array.dtype, np.signedinteger):  # two's complement: shift to unsigned
        array = array.astype(np.int64) + 2 ** (header.bits_stored - 1)
    gray = to_uint8(array, header.bits_stored)
    if header.photometric == "MONOCHROME1":  # 0 is white
        gray = 255 - gray
    return np.repeat(gray[..., None], 3, axis=2)


def iter_frames(path: str | os.PathLike, header: Header,
                indices: Iterable[int] | None = None) -> Iterator[np.ndarray]:
    """Decode frames one by one as displayed, (H, W, 3) uint8 RGB.

    Parameters
    ----------
    path : path of the DICOM file
    header : its :func:`read_header`
    indices : frame numbers (from 0) to decode, in order; default all

    Raises
    ------
    DicomError
        No decoder for the transfer syntax, or pixel data that cannot be decoded (truncated,
        damaged); the message names the syntax and, for damage, the frame.
    """
    import pydicom
    from pydicom.pixels import iter_pixels

    indices = range(header.frames) if indices is None else list(indices)  # never a list of all
    for index in indices:
        if not 0 <= index < header.frames:
            raise DicomError(f"no frame {index}: the file has {header.frames} "
                             f"frame{'s' if header.frames > 1 else ''} (0 to {header.frames - 1})")
    syntax = pydicom.uid.UID(header.attributes.file_meta.TransferSyntaxUID)
    problem = _decoder_problem(syntax)
    if problem:
        raise DicomError(problem)
    source = str(path)
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:  # only readable inflated whole
        source = pydicom.dcmread(path)
    frames = iter_pixels(source, indices=indices)
    for index in indices:
        try:
            image = _display(next(frames), header)
        except Exception as error:  # decoders raise many types for damaged data
            raise DicomError(f"pixel data cannot be decoded ({header.syntax}, frame {index}): "
                             f"{error}") from None
        yield image


def read_frame(path: str | os.PathLike, frame: int | None = None) -> tuple[np.ndarray, Header]:
    """One frame as displayed ((H, W, 3) uint8 RGB) and the file's header.

    ``frame`` may be omitted for a single-frame file only: a cine loop needs one chosen.
    """
    header = read_header(path)
    if frame is None and header.frames > 1:
        raise DicomError(f"{header.frames} frames (a cine loop): choose one with --frame N, "
                         f"0 to {header.frames - 1}")
    return next(iter_frames(path, header, [frame or 0])), header
