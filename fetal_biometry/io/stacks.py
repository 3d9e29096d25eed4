"""Headers of image stacks, read by the project before SimpleITK sees the file.

A stack header is text (MetaImage ``.mha``/``.mhd``, NRRD ``.nrrd``/``.nhdr``) or a small
binary block (NIfTI-1 ``.nii``/``.nii.gz``). The text formats may name data files elsewhere
(MetaImage ``ElementDataFile``, NRRD ``data file``: one file, a ``LIST`` or a numbered
pattern); SimpleITK would read whatever they name and whatever size they declare. Here
(:func:`read_header`) every data file is held to :func:`fetal_biometry.paths.inside` the
header's folder, and the declared size to the budget below, before any pixel is read:

the frames and the bytes of :mod:`fetal_biometry.io.limits` (a frame up to 16 megapixels, a
stack up to 100,000 frames, the declared bytes present in the file, or a plausible share of
them for compressed data), so a tiny file cannot declare gigabytes.

SimpleITK is then told which reader to use (:attr:`Header.image_io`), so it reads the format
that was checked and no other.
"""
from __future__ import annotations

import dataclasses
import gzip
import math
import os
import pathlib
import re
import struct

from fetal_biometry import paths
from fetal_biometry.io import limits

_HEADER_BYTES = 1 << 16  # a text header longer than this is no header

_META_TYPES = {"MET_UCHAR": ("uint8", 1), "MET_CHAR": ("int8", 1), "MET_USHORT": ("uint16", 2),
               "MET_SHORT": ("int16", 2), "MET_UINT": ("uint32", 4), "MET_INT": ("int32", 4),
               "MET_ULONG": ("uint64", 8), "MET_LONG": ("int64", 8), "MET_ULONG_LONG": ("uint64", 8),
               "MET_LONG_LONG": ("int64", 8), "MET_FLOAT": ("float32", 4), "MET_DOUBLE": ("float64", 8)}
_NRRD_TYPES = {**{name: ("int8", 1) for name in ("signed char", "int8", "int8_t")},
               **{name: ("uint8", 1) for name in ("uchar", "unsigned char", "uint8", "uint8_t")},
               **{name: ("int16", 2) for name in ("short", "short int", "signed short",
                                                  "signed short int", "int16", "int16_t")},
               **{name: ("uint16", 2) for name in ("ushort", "unsigned short", "unsigned short int",
                                                   "uint16", "uint16_t")},
               **{name: ("int32", 4) for name in ("int", "signed int", "int32", "int32_t")},
               **{name: ("uint32", 4) for name in ("uint", "unsigned int", "uint32", "uint32_t")},
               **{name: ("int64", 8) for name in ("longlong", "long long", "long long int",
                                                  "signed long long", "signed long long int",
                                                  "int64", "int64_t")},
               **{name: ("uint64", 8) for name in ("ulonglong", "unsigned long long",
                                                   "unsigned long long int", "uint64", "uint64_t")},
               "float": ("float32", 4), "double": ("float64", 8)}
_NIFTI_TYPES = {2: ("uint8", 1), 4: ("int16", 2), 8: ("int32", 4), 16: ("float32", 4),
                64: ("float64", 8), 128: ("uint8", 1), 256: ("int8", 1), 512: ("uint16", 2),
                768: ("uint32", 4), 1024: ("int64", 8), 1280: ("uint64", 8), 2304: ("uint8", 1)}
_NIFTI_COMPONENTS = {128: 3, 2304: 4}  # RGB24, RGBA32: several bytes per voxel
SUFFIXES = {".mha": "MetaImageIO", ".mhd": "MetaImageIO", ".nrrd": "NrrdImageIO",
            ".nhdr": "NrrdImageIO", ".nii": "NiftiImageIO", ".nii.gz": "NiftiImageIO"}


class StackError(ValueError):
    """A stack header that is unreadable, names files outside its folder, or declares too much."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What a stack header declares, checked: sizes in file order (x, y[, frames])."""

    path: pathlib.Path
    image_io: str  # SimpleITK's reader for this format
    size: tuple[int, ...]
    components: int
    dtype: str  # NumPy's name of the element type
    compressed: bool
    data_files: tuple[pathlib.Path, ...]  # resolved, inside the header's folder; () for local data

    @property
    def frames(self) -> int:
        return self.size[2] if len(self.size) > 2 else 1


def _format(path: pathlib.Path) -> str:
    name = path.name.lower()
    for suffix, image_io in SUFFIXES.items():
        if name.endswith(suffix):
            return image_io
    raise StackError(f"{path}: not a stack ({', '.join(SUFFIXES)})")


def _int(path: pathlib.Path, field: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise StackError(f"{path}: {field} {text!r} is not an integer") from None
    if value < 1:
        raise StackError(f"{path}: {field} {value} must be at least 1")
    return value


def _pattern_names(path: pathlib.Path, field: str, words: list[str]) -> list[str]:
    """File names of a numbered pattern 'fmt min max step' (MetaImage and NRRD alike)."""
    try:
        first, last, step = (int(w) for w in words[1:4])
    except ValueError:
        raise StackError(f"{path}: {field} pattern {' '.join(words)!r}: min, max, step must be integers") from None
    if step == 0 or (last - first) / step < 0 or abs((last - first) // step) >= limits.MAX_FRAMES:
        raise StackError(f"{path}: {field} pattern {' '.join(words)!r} names no or too many files")
    try:
        return [words[0] % index for index in range(first, last + (1 if step > 0 else -1), step)]
    except (TypeError, ValueError):
        raise StackError(f"{path}: {field} pattern {words[0]!r} is not a printf-style number pattern") from None


def _data_files(path: pathlib.Path, field: str, value: str, rest: list[str]) -> tuple[pathlib.Path, ...]:
    """The data files a header's ``field`` names, each held inside the header's folder."""
    words = value.split()
    if words[0] == "LIST":
        names = [line.strip() for line in rest if line.strip()]
    elif "%" in words[0] and len(words) >= 4:
        names = _pattern_names(path, field, words)
    else:
        names = [value.strip()]
    if not names:
        raise StackError(f"{path}: {field} names no data file")
    try:
        return tuple(paths.inside(path.parent, name, f"{path} ({field})", "a stack's data")
                     for name in names)
    except paths.OutsideFolder as error:
        raise StackError(str(error)) from None


def _text_header(path: pathlib.Path) -> tuple[bytes, int]:
    """The first bytes of the file and its size."""
    with open(path, "rb") as file:
        return file.read(_HEADER_BYTES), os.fstat(file.fileno()).st_size


def _metaimage(path: pathlib.Path) -> tuple[Header, int]:
    """A MetaImage header and the byte offset where its local data start."""
    head, _ = _text_header(path)
    fields, offset, lines = {}, 0, head.split(b"\n")
    for index, raw in enumerate(lines):
        offset += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise StackError(f"{path}: not a MetaImage header (line {index + 1}: {line[:60]!r})")
        key, value = key.strip(), value.strip()
        fields[key.lower()] = value
        if key.lower() == "elementdatafile":
            break
    else:
        raise StackError(f"{path}: not a MetaImage header (no ElementDataFile in its first "
                         f"{_HEADER_BYTES // 1024} KiB)")
    try:
        ndims = _int(path, "NDims", fields.get("ndims", ""))
        size = tuple(_int(path, "DimSize", v) for v in fields.get("dimsize", "").split())
        dtype, _ = _META_TYPES[fields.get("elementtype", "").upper()]
    except KeyError:
        raise StackError(f"{path}: ElementType {fields.get('elementtype')!r} is not one MetaImage knows") from None
    if len(size) != ndims:
        raise StackError(f"{path}: DimSize {size} does not have NDims = {ndims} values")
    components = _int(path, "ElementNumberOfChannels", fields.get("elementnumberofchannels", "1"))
    compressed = fields.get("compresseddata", "false").lower() == "true"
    value = fields["elementdatafile"]
    rest = [raw.decode("latin-1") for raw in lines[index + 1:]]
    files = () if value.upper() == "LOCAL" else _data_files(path, "ElementDataFile", value, rest)
    return Header(path, "MetaImageIO", size, components, dtype, compressed, files), offset


def _nrrd(path: pathlib.Path) -> tuple[Header, int]:
    """A NRRD header and the byte offset where its attached data start."""
    head, _ = _text_header(path)
    if not re.match(rb"NRRD000[1-5]\r?\n", head):
        raise StackError(f"{path}: not a NRRD file (no NRRD000x magic line)")
    fields, offset, lines = {}, 0, head.split(b"\n")
    rest: list[str] = []
    for index, raw in enumerate(lines):
        offset += len(raw) + 1
        line = raw.decode("latin-1").rstrip("\r")
        if index == 0 or line.startswith("#") or ":=" in line:
            continue
        if not line:
            break
        key, sep, value = line.partition(": ")
        if not sep:
            raise StackError(f"{path}: not a NRRD header (line {index + 1}: {line[:60]!r})")
        key = key.strip().lower().replace(" ", "")
        fields[key] = value.strip()
        if key == "datafile" and value.split()[:1] == ["LIST"]:
            rest = [raw.decode("latin-1") for raw in lines[index + 1:]]
            break
    else:
        if len(head) == _HEADER_BYTES:
            raise StackError(f"{path}: NRRD header longer than {_HEADER_BYTES // 1024} KiB")
    try:
        dtype, _ = _NRRD_TYPES[fields.get("type", "").lower()]
    except KeyError:
        raise StackError(f"{path}: NRRD type {fields.get('type')!r} is not one this reader knows") from None
    ndims = _int(path, "dimension", fields.get("dimension", ""))
    size = tuple(_int(path, "sizes", v) for v in fields.get("sizes", "").split())
    if len(size) != ndims:
        raise StackError(f"{path}: sizes {size} do not have dimension = {ndims} values")
    kinds = fields.get("kinds", "").lower().split()
    components = 1
    if kinds and kinds[0] in ("vector", "rgb-color", "rgba-color", "3-color", "4-color",
                              "covariant-vector", "list", "point"):
        components, size = size[0], size[1:]
    compressed = fields.get("encoding", "raw").lower() not in ("raw",)
    value = fields.get("datafile")
    files = () if value is None else _data_files(path, "data file", value, rest)
    if value is None and path.name.lower().endswith(".nhdr"):
        raise StackError(f"{path}: a detached NRRD header without a 'data file' field")
    return Header(path, "NrrdImageIO", size, components, dtype, compressed, files), offset


def _nifti(path: pathlib.Path) -> tuple[Header, int]:
    """A NIfTI-1 header and the byte offset of its voxels."""
    compressed = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as file:
            block = file.read(348)
    except (OSError, EOFError) as error:
        raise StackError(f"{path}: not a readable NIfTI file ({error})") from None
    if len(block) < 348:
        raise StackError(f"{path}: not a NIfTI-1 file (shorter than its 348-byte header)")
    order = "<" if struct.unpack("<i", block[:4])[0] == 348 else ">"
    if struct.unpack(order + "i", block[:4])[0] != 348 or block[344:347] not in (b"n+1", b"ni1"):
        raise StackError(f"{path}: not a NIfTI-1 file (its header does not say so)")
    if block[344:347] == b"ni1":
        raise StackError(f"{path}: a NIfTI header whose voxels lie in a separate .img file; "
                         "give a single-file .nii")
    dim = struct.unpack(order + "8h", block[40:56])
    datatype = struct.unpack(order + "h", block[70:72])[0]
    offset = int(struct.unpack(order + "f", block[108:112])[0])
    if not 1 <= dim[0] <= 7:
        raise StackError(f"{path}: NIfTI dim[0] = {dim[0]}, not 1 to 7")
    size = tuple(_int(path, "dim", str(d)) for d in dim[1:1 + dim[0]])
    if datatype not in _NIFTI_TYPES:
        raise StackError(f"{path}: NIfTI datatype {datatype} is not one this reader knows")
    dtype, _ = _NIFTI_TYPES[datatype]
    header = Header(path, "NiftiImageIO", size, _NIFTI_COMPONENTS.get(datatype, 1), dtype, compressed, ())
    return header, 0 if compressed else offset  # the offset counts decompressed bytes


def _check_budget(header: Header, offset: int) -> None:
    size = header.size
    files = header.data_files or (header.path,)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise StackError(f"{header.path}: its data file {missing[0]} is missing")
    present = sum(f.stat().st_size for f in files) - (0 if header.data_files else offset)
    declared = math.prod(size) * header.components * _bytes(header.dtype)
    try:
        limits.check_frames(*size[:2], math.prod(size[2:]))
        limits.check_bytes(declared, present, header.compressed)
    except limits.BudgetError as error:
        raise StackError(f"{header.path}: {'x'.join(map(str, size))} x {header.components} "
                         f"{header.dtype}: {error}") from None


def _bytes(dtype: str) -> int:
    return int(re.search(r"\d+", dtype).group()) // 8


def read_header(path: str | os.PathLike) -> Header:
    """Read and check the header of the stack at ``path`` (see the module's notes).

    :class:`StackError` names the file and the problem: an unreadable header, a data file
    outside the header's folder (``..``, an absolute path, a symlink out), or sizes over the
    budget or larger than the data present.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise StackError(f"{path}: no such file")
    reader = {"MetaImageIO": _metaimage, "NrrdImageIO": _nrrd, "NiftiImageIO": _nifti}[_format(path)]
    header, offset = reader(path)
    _check_budget(header, offset)
    return header
