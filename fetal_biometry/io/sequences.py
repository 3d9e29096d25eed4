"""Cine loops and sweeps read frame by frame (:func:`open_sequence`): multi-frame DICOM, video, or
a ``.mha`` / ``.nrrd`` stack, in chunks of about :data:`CHUNK_BYTES`; and frames written
to an mp4 (:class:`VideoWriter`)."""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import tempfile
from typing import Callable, Iterator

import cv2
import numpy as np

from fetal_biometry.io import limits, stacks


CHUNK_BYTES = 32 << 20  # a stack is read this much at a time


STACKS = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")
VIDEOS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg")
AGREEMENT = 0.01  # relative difference below which a given spacing agrees with a file's


class SequenceError(ValueError):
    """A sequence that cannot be read as asked; the message names the file and the problem."""


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
    region: tuple[int, int, int, int] | None = None  # a DICOM's calibrated region, cut from each frame
    transducer: str | None = None  # a DICOM's TransducerType (or TransducerData): a fan prior
    reference_pixel: tuple[float, float] | None = None  # its ReferencePixelX0/Y0, in the frame

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
    declared = [int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT,
                                              cv2.CAP_PROP_FRAME_COUNT)]
    try:  # the container's sizes, before a frame is decoded
        limits.check_frames(*declared)
    except limits.BudgetError as error:
        capture.release()
        raise SequenceError(f"{path}: {error}") from None
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        raise SequenceError(f"{path}: OpenCV cannot decode this video")
    count, fps = declared[2], capture.get(cv2.CAP_PROP_FPS)
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
    from fetal_biometry.io import scans

    try:
        first = next(iter(scans.iter_frames(path, region=region, spacing=spacing)))
        count = scans.frame_count(path)
    except StopIteration:
        raise SequenceError(f"{path}: no frames") from None

    def frames() -> Iterator[np.ndarray]:
        for scan in scans.iter_frames(path, region=region, spacing=spacing):
            yield scan.gray

    return Sequence(path, "dicom", count, first.gray.shape, first.spacing_mm, first.spacing_source,
                    None, tuple(first.warnings), frames, lambda: first.rgb, first.region,
                    first.transducer, first.reference_pixel)


def open_sequence(path: str | os.PathLike, spacing: float | None = None,
                  region: int | None = None) -> Sequence:
    """Open a cine loop for streaming: a ``.mha``/``.nrrd`` stack, a video, or a DICOM file.

    ``spacing`` (mm per pixel) is needed for videos and checked against a file's own
    calibration; ``region`` picks one calibrated region of a multi-region DICOM.
    :class:`SequenceError` (or :class:`fetal_biometry.io.scans.ScanError`) names the file and
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


class VideoWriter:
    """Frames (RGB) into an mp4 (OpenCV's mp4v codec), written aside and renamed when closed."""

    def __init__(self, path: str | os.PathLike, fps: float, shape: tuple[int, int]):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A staged name with the writer's pid: atomic.claim_output removes it once that pid is gone.
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.tmp-{os.getpid()}-", suffix=self.path.suffix,
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
