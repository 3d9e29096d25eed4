"""DICOM decoding: every transfer syntax the installed plugins encode, every photometric
interpretation, palettes, cine loops frame by frame, damaged files, privacy of the header."""
import dataclasses

import numpy as np
import pytest
from pydicom import dcmread, uid

import dicom_files
from fetal_biometry.io import dicom

RNG = np.random.default_rng(5)
GRAY = RNG.integers(0, 256, (40, 64)).astype(np.uint8)
RGB = np.stack([GRAY, 255 - GRAY, np.full_like(GRAY, 90)], axis=-1)
# Lossy codecs and chroma subsampling are checked on smooth pictures, where they are accurate.
RAMP = np.tile(np.linspace(0, 255, 64), (40, 1)).astype(np.uint8)
SMOOTH = np.stack([RAMP, RAMP[::-1], np.full_like(RAMP, 90)], axis=-1)
LOSSLESS = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
            uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless, uid.JPEGLosslessSV1]
NAMES = {s: uid.UID(s).keyword for s in LOSSLESS + [uid.JPEGBaseline8Bit, uid.JPEG2000, uid.JPEGLSNearLossless]}


def _read(path, frame=None) -> np.ndarray:
    return dicom.read_frame(path, frame)[0]


@pytest.mark.parametrize("syntax", LOSSLESS, ids=NAMES.get)
@pytest.mark.parametrize("photometric, pixels", [("MONOCHROME2", GRAY), ("RGB", RGB)], ids=["mono2", "rgb"])
def test_lossless_syntaxes_decode_exactly(tmp_path, syntax, photometric, pixels):
    path = dicom_files.write(tmp_path / "scan.dcm", pixels, photometric, syntax)
    assert dcmread(path).file_meta.TransferSyntaxUID == syntax
    want = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    np.testing.assert_array_equal(_read(path), want)


@pytest.mark.parametrize("syntax, photometric, tolerance", [
    (uid.JPEGBaseline8Bit, "YBR_FULL_422", 6), (uid.JPEGBaseline8Bit, "MONOCHROME2", 3),
    (uid.JPEG2000, "RGB", 6), (uid.JPEGLSNearLossless, "RGB", 2)], ids=lambda v: str(v))
def test_lossy_syntaxes_decode_closely(tmp_path, syntax, photometric, tolerance):
    pixels = SMOOTH if photometric != "MONOCHROME2" else RAMP
    path = dicom_files.write(tmp_path / "scan.dcm", pixels, photometric, syntax)
    got = _read(path).astype(int)
    want = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    assert np.abs(got - want).max() <= tolerance


@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.RLELossless, uid.JPEGLosslessSV1],
                         ids=NAMES.get)
@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_ybr_is_converted_once(tmp_path, syntax, photometric):
    if syntax == uid.RLELossless and photometric == "YBR_FULL_422":
        pytest.skip("RLE cannot hold subsampled YBR_FULL_422 (DICOM PS3.5 8.2.2)")
    path = dicom_files.write(tmp_path / "scan.dcm", SMOOTH, photometric, syntax)
    # Converted twice, the colours would be far off; once, YCbCr rounding (and 4:2:2) remain.
    assert np.abs(_read(path).astype(int) - SMOOTH).max() <= 5


def test_monochrome1_and_16_bit_values(tmp_path):
    twelve = GRAY.astype(np.uint16) * 16  # 12 bits stored in 16
    path = dicom_files.write(tmp_path / "m1.dcm", twelve, "MONOCHROME1", uid.JPEGLSLossless, bits=12)
    want = 255 - np.rint(twelve.astype(float) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(_read(path)[..., 0], want)
    sixteen = GRAY.astype(np.uint16) * 257
    path = dicom_files.write(tmp_path / "m2.dcm", sixteen, "MONOCHROME2", uid.RLELossless)
    np.testing.assert_array_equal(_read(path)[..., 1], GRAY)


@pytest.mark.parametrize("lut_dtype", [np.uint8, np.uint16], ids=["8-bit LUT", "16-bit LUT"])
def test_palette_colour(tmp_path, lut_dtype):
    index = np.arange(256)
    lut = np.stack([index, 255 - index, np.full(256, 100)], axis=1)
    lut = (lut * (257 if lut_dtype == np.uint16 else 1)).astype(lut_dtype)
    path = dicom_files.write(tmp_path / "pal.dcm", GRAY, "PALETTE COLOR", uid.RLELossless, lut=lut)
    want = np.stack([GRAY, 255 - GRAY, np.full_like(GRAY, 100)], axis=-1)
    np.testing.assert_array_equal(_read(path), want)


def test_cine_loop_frame_by_frame(tmp_path):
    loop = RNG.integers(0, 256, (6, 40, 64)).astype(np.uint8)
    for syntax in (uid.ExplicitVRLittleEndian, uid.JPEG2000Lossless):
        path = dicom_files.write(tmp_path / "loop.dcm", loop, syntax=syntax, frames=6)
        header = dicom.read_header(path)
        assert header.frames == 6
        got = [frame[..., 0] for frame in dicom.iter_frames(path, header)]
        np.testing.assert_array_equal(np.stack(got), loop)
        np.testing.assert_array_equal(_read(path, 4)[..., 0], loop[4])
        with pytest.raises(dicom.DicomError, match="6 frames .*--frame N, 0 to 5"):
            _read(path)
        with pytest.raises(dicom.DicomError, match="no frame 6: the file has 6 frames"):
            _read(path, 6)


def test_regions_are_parsed_with_units(tmp_path):
    regions = [dicom_files.region((0, 0, 99, 79), (0.025, 0.025)),
               dicom_files.region((100, 0, 159, 79), (0.01, 0.5), spatial_format=2, data_type=3, units=(4, 7))]
    path = dicom_files.write(tmp_path / "r.dcm", np.zeros((80, 160), np.uint8), regions=regions)
    first, strip = dicom.read_header(path).regions
    assert first.tissue and first.bounds == (0, 0, 100, 80)
    assert first.delta_mm == pytest.approx((0.25, 0.25))  # cm -> mm
    assert not strip.tissue and strip.delta_mm is None  # seconds and cm/s: no pixel size
    assert "M-mode" in strip.describe() and "PW Doppler" in strip.describe()


def test_header_holds_no_identity(tmp_path):
    path = dicom_files.write(tmp_path / "id.dcm", GRAY, BurnedInAnnotation="YES")
    header = dicom.read_header(path)
    text = repr(dataclasses.astuple(header)) + repr(header.attributes)
    for value in dicom_files.IDENTITY.values():
        assert value not in text
    assert any("BurnedInAnnotation" in w for w in header.warnings())


def test_damaged_and_foreign_files_are_named_errors(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(dicom.DicomError, match="unreadable DICOM"):
        dicom.read_header(tmp_path / "junk.dcm")
    path = dicom_files.write(tmp_path / "cut.dcm", GRAY)
    data = path.read_bytes()
    path.write_bytes(data[:-700])  # the pixel data cut short
    with pytest.raises(dicom.DicomError, match="pixel data cannot be decoded .*frame 0"):
        _read(path)
    path = dicom_files.write(tmp_path / "bad.dcm", RAMP, syntax=uid.JPEGLosslessSV1)
    ds = dcmread(path)
    ds.PixelData = ds.PixelData[:200] + b"\x00" * 8 + ds.PixelData[-40:]  # a broken stream
    ds.save_as(path)
    with pytest.raises(dicom.DicomError, match="pixel data cannot be decoded"):
        _read(path)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.99.1"  # a private syntax
    ds.save_as(path)
    with pytest.raises(dicom.DicomError, match="has no pixel decoder"):
        _read(path)


def test_dicom_files_are_recognised_without_extension(tmp_path):
    path = dicom_files.write(tmp_path / "IM_0001", GRAY)
    assert dicom.is_dicom(path) and not dicom.is_dicom(tmp_path / "missing")
