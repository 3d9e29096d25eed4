"""Ultrasound exams for the DICOM-out and PACS tests: simulated scans written as a scanner would,
and the checks every written DICOM object must pass."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from pydicom import uid

import dicom_files
from fetal_biometry.io import dataset


def scan_files(fetal_data: pathlib.Path, folder: pathlib.Path, study: str | None = None) -> dict:
    """The first simulated case as a single-frame file and as a 4-frame cine loop (the scan
    shifted by a pixel per frame) of one study; returns {"single": path, "loop": path, "study": uid,
    "image": the scan}."""
    data = dataset.open(fetal_data)
    case = data.read(data.cases[0])
    study = study or uid.generate_uid()
    h, w = case.image.shape
    region = [dicom_files.region((0, 0, w - 1, h - 1), (case.spacing_mm / 10, case.spacing_mm / 10))]
    folder.mkdir(parents=True, exist_ok=True)
    single = dicom_files.write(folder / "single.dcm", case.image, regions=region, StudyInstanceUID=study)
    loop = np.stack([np.roll(case.image, k, axis=1) for k in range(4)])
    cine = dicom_files.write(folder / "loop.dcm", loop, frames=4, regions=region, StudyInstanceUID=study,
                             InstanceNumber=2)
    return {"single": single, "loop": cine, "study": study, "image": case.image}


def dciodvfy_errors(path: pathlib.Path) -> list[str]:
    """The errors dicom3tools' validator finds in a DICOM file (warnings are not errors)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (Debian's dicom3tools; tools/bootstrap.sh installs it)")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
