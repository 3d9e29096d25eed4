"""Budgets before allocation (fetal_biometry.io.limits): a file of a few kilobytes that declares
gigabytes (frames, pixels, voxels) is refused from its header, by every reader, with the file
named; the tools say so without a traceback; the limits are in their --help."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom import uid

import dicom_files
from conftest import ROOT
from fetal_biometry.io import limits, scans, sequences as sweep


def _dicom(path, syntax=uid.ExplicitVRLittleEndian, **declared):
    """A small valid DICOM loop, then its header rewritten to declare ``declared``."""
    dicom_files.write(path, np.zeros((3, 16, 16), np.uint8), syntax=syntax, frames=3)
    ds = pydicom.dcmread(path)
    for keyword, value in declared.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def _png(path, width, height, depth=8):
    """A PNG whose IHDR declares ``width`` x ``height`` over a tiny IDAT (a 'PNG bomb' header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _mha(path, dims, compressed=False):
    """A MetaImage header declaring ``dims`` with a few bytes of data."""
    path.write_bytes(("ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                      f"CompressedData = {compressed}\nDimSize = {' '.join(map(str, dims))}\n"
                      "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n").encode() + b"\0" * 1000)
    return path


# (reader, what the message must say): each file is a few kB
BOMBS = {
    "dicom frames": (lambda tmp: _dicom(tmp / "f.dcm", NumberOfFrames=2**31 - 1), "frames, over the limit"),
    "dicom pixels (RLE)": (lambda tmp: _dicom(tmp / "r.dcm", uid.RLELossless, Rows=60000, Columns=60000,
                                               NumberOfFrames=100000), "megapixels per image or frame"),
    "dicom bytes": (lambda tmp: _dicom(tmp / "b.dcm", NumberOfFrames=5000), "truncated, or forged"),
    "png bomb": (lambda tmp: _png(tmp / "bomb.png", 100_000, 100_000), "megapixels"),
    "png over the frame limit": (lambda tmp: _png(tmp / "big.png", 5000, 5000), "megapixels per image"),
    "mha frames": (lambda tmp: _mha(tmp / "s.mha", (64, 64, 2_000_000_000)), "frames, over the limit"),
    "mha bytes": (lambda tmp: _mha(tmp / "t.mha", (64, 64, 500)), "truncated, or forged"),
    "mha compressed": (lambda tmp: _mha(tmp / "z.mha", (512, 512, 5000), True), "of compressed data"),
}


@pytest.mark.parametrize("bomb", BOMBS)
def test_a_tiny_file_declaring_gigabytes_is_refused_from_its_header(bomb, tmp_path):
    make, message = BOMBS[bomb]
    path = make(tmp_path)
    assert path.stat().st_size < 10_000
    opener = sweep.open_sequence if path.suffix in (".mha", ".dcm") else scans.read_scans
    with pytest.raises(ValueError) as error:
        opener(path)
    assert str(path) in str(error.value) and message in str(error.value), str(error.value)


def test_a_stack_within_the_budget_still_streams(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 32, 48), np.uint8))
    image.SetSpacing((0.5, 0.5, 1))
    sitk.WriteImage(image, str(tmp_path / "ok.mha"), useCompression=True)
    assert len(list(sweep.open_sequence(tmp_path / "ok.mha").frames())) == 3


@pytest.mark.parametrize("tool, args", [
    ("beam_map.py", ["{bomb}", "--out", "{tmp}/o"]),
    ("infer.py", ["{model}", "{bomb}", "--out", "{tmp}/o", "--spacing", "0.5"]),
    ("sweep.py", ["{model}", "{frames}", "--out", "{tmp}/o"]),
])
def test_tools_answer_a_bomb_with_a_sentence(tool, args, tmp_path, fetal_model):
    bomb = _png(tmp_path / "bomb.png", 100_000, 100_000)
    frames = _dicom(tmp_path / "loop.dcm", NumberOfFrames=2**31 - 1)
    values = {"bomb": bomb, "tmp": tmp_path, "model": fetal_model, "frames": frames}
    result = subprocess.run([sys.executable, ROOT / "tools" / tool, *(a.format(**values) for a in args)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "over the limit" in result.stderr or "megapixels" in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("tool", ["infer.py", "sweep.py", "beam_map.py", "import_dataset.py"])
def test_the_limits_are_in_the_help(tool):
    result = subprocess.run([sys.executable, ROOT / "tools" / tool, "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert " ".join(limits.HELP.split()) in " ".join(result.stdout.split())


# ----------------------------------------------------------------------------- absurd numbers

@pytest.mark.parametrize("tool, args", [
    ("infer.py", ["{model}", "{image}", "--out", "{tmp}/o", "--spacing", "0.001"]),
    ("infer.py", ["{model}", "{image}", "--out", "{tmp}/o", "--assume-spacing", "1e-9"]),
    ("infer.py", ["{model}", "{image}", "--out", "{tmp}/o", "--spacing", "100"]),
    ("import_dataset.py", ["cvat", "{tmp}/a.xml", "--out", "{tmp}/o", "--spacing", "1e-9"]),
    ("make_lmdb.py", ["{data}", "{tmp}/o", "--spacing-mm", "1e-9"]),
    ("beam_map.py", ["{image}", "--out", "{tmp}/a.xml"]),  # --out names an existing file
])
def test_an_absurd_number_or_path_gets_a_sentence_not_a_traceback(tool, args, tmp_path, fetal_model,
                                                                   fetal_data):
    (tmp_path / "a.xml").write_text("<annotations/>")
    image = next((fetal_data / "images").glob("*.png"))
    values = {"tmp": tmp_path, "model": fetal_model, "image": image, "data": fetal_data}
    result = subprocess.run([sys.executable, ROOT / "tools" / tool, *(a.format(**values) for a in args)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert ("pixel spacing is a number of mm from 0.005 to 5" in result.stderr
            or "target spacing" in result.stderr or "is a file" in result.stderr), result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("delta", [[1e-9, 1e-9], [0.2, 2000.0], [0.005, 5.0]])
def test_a_calibration_in_a_file_that_is_no_ultrasound_spacing_is_refused(delta, tmp_path):
    # The last: each spacing possible, but square pixels would make the 256x256 frame 65 MP.
    path = dicom_files.write(tmp_path / "cal.dcm", np.zeros((256, 256), np.uint8), PixelSpacing=delta)
    with pytest.raises(scans.ScanError) as error:
        scans.read_scans(path)
    assert str(path) in str(error.value) and "PixelSpacing" in str(error.value), str(error.value)


@pytest.mark.parametrize("fmt", ["masks", "hc18", "labelme"])
def test_an_annotation_png_bomb_is_a_listed_problem(fmt, tmp_path):
    import base64
    import json

    from fetal_biometry import importers

    folder = tmp_path / "ann"
    folder.mkdir()
    bomb = _png(tmp_path / "bomb.png", 100_000, 100_000)
    if fmt == "masks":
        bomb.rename(folder / "scan.png")
    elif fmt == "hc18":
        bomb.rename(folder / "001_HC_Annotation.png")
    else:  # a real scan, its mask a bomb in base64
        import cv2
        from fetal_biometry import simulator
        from fetal_biometry.geometry import probe as geom
        case = simulator.simulate_case(5, 0, (160, 160), "convex", appearance=simulator.NARROW)
        cv2.imwrite(str(folder / "scan.png"), case.image)
        (tmp_path / "probe.json").write_text(json.dumps(geom.to_dict(case.geometry)))
        shape = {"label": "shadow", "shape_type": "mask", "points": [[0, 0], [9, 9]],
                 "mask": base64.b64encode(bomb.read_bytes()).decode()}
        (folder / "scan.json").write_text(json.dumps({"shapes": [shape], "imagePath": "scan.png",
                                                      "imageWidth": 160, "imageHeight": 160}))
    with pytest.raises(importers.AnnotationError) as error:
        importers.import_dataset(fmt, folder, tmp_path / "out", importers.Options(
            images=folder if fmt == "masks" else None, spacing_mm=0.5,
            geometry=tmp_path / "probe.json" if fmt == "labelme" else None))
    assert "megapixels" in str(error.value) and not (tmp_path / "out").exists(), str(error.value)
