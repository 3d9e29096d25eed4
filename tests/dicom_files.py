"""Ultrasound DICOM files as scanners write them, made by the tests with pydicom.

Each encoding goes through a real encoder: pydicom's RLE, pyjpegls (JPEG-LS), pylibjpeg-openjpeg
(JPEG 2000), OpenCV's libjpeg (JPEG baseline), and :func:`jpeg_lossless` below (JPEG lossless,
process 14, first-order prediction: no installed package encodes it). Every file carries
patient, institution and operator attributes, so that tests can check none reaches an output.
"""
from __future__ import annotations

import pathlib

import cv2
import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space

# Attributes that identify people or places; none of these values may reach any output.
IDENTITY = {"PatientName": "DOE^JANE", "PatientID": "PID-4711-0815", "PatientBirthDate": "19870214",
            "InstitutionName": "St Elsewhere Womens Hospital", "OperatorsName": "SMITH^ANNA",
            "ReferringPhysicianName": "GREEN^MARK", "PerformingPhysicianName": "WHITE^ROSE",
            "StationName": "US-ROOM-7", "AccessionNumber": "ACC99887766",
            "InstitutionAddress": "1 Hospital Road, Springfield"}
# The rest of the patient, study, series and equipment modules of a scanner's file.
EXAM = {"PatientSex": "F", "StudyDate": "20260314", "StudyTime": "093000", "StudyID": "4711",
        "SeriesNumber": 1, "InstanceNumber": 1, "Manufacturer": "ACME Ultrasound",
        "Laterality": "", "PatientOrientation": "", "ImageType": ["ORIGINAL", "PRIMARY"]}

# Transfer syntax -> pydicom encoding plugin (None: written here, not by Dataset.compress).
COMPRESSED = {uid.RLELossless: "pydicom", uid.JPEGLSLossless: "pyjpegls",
              uid.JPEGLSNearLossless: "pyjpegls", uid.JPEG2000Lossless: "pylibjpeg",
              uid.JPEG2000: "pylibjpeg", uid.JPEGBaseline8Bit: None, uid.JPEGLosslessSV1: None}
NATIVE = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian)


def region(bounds, delta_cm=(0.03, 0.03), spatial_format: int = 1, data_type: int = 1,
           units=(3, 3), reference=None) -> Dataset:
    """One item of SequenceOfUltrasoundRegions; ``bounds`` (x0, y0, x1, y1) inclusive as in
    DICOM, ``delta_cm`` (x, y) in ``units`` (3: cm, 4: seconds, 7: cm/s)."""
    item = Dataset()
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = spatial_format, data_type, 0
    (item.RegionLocationMinX0, item.RegionLocationMinY0,
     item.RegionLocationMaxX1, item.RegionLocationMaxY1) = bounds
    item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX, item.PhysicalDeltaY = delta_cm
    if reference is not None:
        item.ReferencePixelX0, item.ReferencePixelY0 = reference
    return item


def write(path: pathlib.Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
          syntax: str = uid.ExplicitVRLittleEndian, *, frames: int | None = None,
          bits: int | None = None, lut: np.ndarray | None = None, regions=(), **attributes) -> pathlib.Path:
    """Write ``pixels`` as an ultrasound DICOM file.

    ``pixels`` is one frame (H, W) or (H, W, 3) in RGB, or a loop (N, H, W[, 3]) with
    ``frames=N``. For YBR photometrics the RGB pixels are converted (and, natively, subsampled)
    here. ``lut`` (entries, 3) makes a PALETTE COLOR image (8- or 16-bit from its dtype);
    ``attributes`` (e.g. PixelSpacing, BurnedInAnnotation) are set on the dataset.
    """
    pixels = np.asarray(pixels)
    loop = pixels if frames else pixels[None]
    colour = loop.ndim == 4
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.UltrasoundMultiFrameImageStorage if frames else uid.UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    for keyword, value in EXAM.items():  # as scanners write them; ``attributes`` may override
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    ds.Rows, ds.Columns = loop.shape[1:3]
    if frames:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = bits or 8 * loop.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8 * loop.itemsize, bits, bits - 1, 0
    if lut is not None:
        lut_bits = 8 * lut.itemsize
        for channel, name in enumerate(("Red", "Green", "Blue")):
            setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [len(lut) % 65536, 0, lut_bits])
            setattr(ds, f"{name}PaletteColorLookupTableData", lut[:, channel].astype(f"<u{lut.itemsize}").tobytes())
    if regions:
        ds.SequenceOfUltrasoundRegions = list(regions)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    _set_pixels(ds, loop, photometric, syntax)
    ds.save_as(path, enforce_file_format=True)
    return pathlib.Path(path)


def _set_pixels(ds: Dataset, loop: np.ndarray, photometric: str, syntax: str) -> None:
    if photometric.startswith("YBR_FULL"):  # the stored values are YCbCr
        loop = np.stack([convert_color_space(frame, "RGB", "YBR_FULL") for frame in loop])
    if syntax in NATIVE:
        if photometric == "YBR_FULL_422":  # Y1 Y2 Cb Cr for each pair of pixels
            y, cb, cr = loop[..., 0], loop[..., 1], loop[..., 2]
            pairs = np.stack([y[..., 0::2], y[..., 1::2], cb[..., 0::2], cr[..., 0::2]], axis=-1)
            ds.PixelData = pairs.tobytes()
        else:
            ds.PixelData = loop.astype(loop.dtype.newbyteorder("<")).tobytes()
        return
    plugin = COMPRESSED[syntax]
    if plugin is not None:
        lossy = {uid.JPEG2000: {"j2k_cr": [4]}, uid.JPEGLSNearLossless: {"jls_error": 2}}.get(syntax, {})
        ds.compress(syntax, loop if len(loop) > 1 else loop[0], encoding_plugin=plugin,
                    generate_instance_uid=False, **lossy)
        return
    if syntax == uid.JPEGBaseline8Bit:
        # OpenCV converts RGB to YCbCr itself: hand it the RGB frame, 4:2:2 subsampled.
        rgb = np.stack([convert_color_space(f, "YBR_FULL", "RGB") for f in loop]) if photometric.startswith("YBR") else loop
        params = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
        fragments = [cv2.imencode(".jpg", f[..., ::-1] if f.ndim == 3 else f, params)[1].tobytes() for f in rgb]
    else:
        fragments = [jpeg_lossless(frame, int(ds.BitsStored)) for frame in loop]
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01" if syntax == uid.JPEGBaseline8Bit else "00"


def jpeg_lossless(image: np.ndarray, precision: int) -> bytes:
    """A JPEG lossless (ITU-T T.81 process 14, predictor 1: the left neighbour) bitstream of a
    gray (H, W) or colour (H, W, 3) image of ``precision`` bits, one Huffman table in which
    every difference category 0-16 has a 5-bit code."""
    image = np.asarray(image).astype(np.int64)
    planes = image[..., None] if image.ndim == 2 else image
    height, width, components = planes.shape
    predicted = np.empty_like(planes)
    predicted[:, 1:] = planes[:, :-1]  # left neighbour ...
    predicted[1:, 0] = planes[:-1, 0]  # ... above at the start of a row ...
    predicted[0, 0] = 1 << (precision - 1)  # ... and half range for the first sample
    diff = ((planes - predicted + 32768) % 65536 - 32768).reshape(-1)  # interleaved samples
    magnitude = np.abs(diff)
    category = np.where(diff == -32768, 16, np.ceil(np.log2(magnitude + 1)).astype(int))
    bits = []
    for d, ssss in zip(diff.tolist(), category.tolist()):
        bits.append(format(ssss, "05b"))
        if 0 < ssss < 16:
            bits.append(format(d if d > 0 else d - 1 + (1 << ssss), f"0{ssss}b")[-ssss:])
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for byte in int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b"":
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    sof = bytes([precision]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([components])
    sof += b"".join(bytes([c + 1, 0x11, 0]) for c in range(components))
    counts = [0, 0, 0, 0, 17] + [0] * 11  # 17 codes of length 5
    dht = bytes([0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([components]) + b"".join(bytes([c + 1, 0x00]) for c in range(components)) + bytes([1, 0, 0])
    return (b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos)
            + bytes(data) + b"\xff\xd9")
