#!/usr/bin/env python3
"""A trained model's results through a real PACS: held-out scans in, SR and SEG back, compared.

The held-out simulated scans (seed 1, as in `make demo`) are written as a scanner would
(ultrasound region calibration; the last two as 6-frame cine loops) into one study of a
throwaway Orthanc (tests/orthanc.py: Debian's Orthanc and its DICOMweb plugin on a free
loopback port), `tools/pacs.py` measures the study and stores its results back, and every SR
is read back over DICOMweb: its AC must equal the local JSON's, and every object written must
pass dciodvfy. The exam's SR (the panel of the single frames) is read back beside them. The test suite does the same with a model trained for 4 iterations, which
measures no AC; this is the check with one that does.

    python benchmarks/pacs_roundtrip.py [--model runs/fetal_channels] [--cases 10]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from dicomweb_client.api import DICOMwebClient  # noqa: E402
from pydicom import uid  # noqa: E402

import dicom_files  # noqa: E402
from exams import dciodvfy_errors  # noqa: E402
from orthanc import PASSWORD, USER, Orthanc  # noqa: E402
from fetal_biometry import simulator  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402
from fetal_biometry.exchange import sr  # noqa: E402


def _upload(server: Orthanc, data, work: pathlib.Path, study: str) -> None:
    for k, name in enumerate(data.cases):
        case = data.read(name)
        h, w = case.image.shape
        region = [dicom_files.region((0, 0, w - 1, h - 1), (case.spacing_mm / 10,) * 2)]
        pixels, frames = case.image, None
        if k >= len(data.cases) - 2:  # a cine loop: the scan shifted a pixel per frame
            pixels, frames = np.stack([np.roll(case.image, j, axis=1) for j in range(6)]), 6
        server.upload(dicom_files.write(work / f"{name}.dcm", pixels, frames=frames, regions=region,
                                        StudyInstanceUID=study, InstanceNumber=k + 1))


def _reports(server: Orthanc, study: str) -> list:
    client = DICOMwebClient(server.dicomweb, session=server.session())
    found = []
    for series in client.search_for_series(study, search_filters={"Modality": "SR"}):
        series_uid = series["0020000E"]["Value"][0]
        for item in client.search_for_instances(study, series_uid):
            found.append(client.retrieve_instance(study, series_uid, item["00080018"]["Value"][0]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "runs/fetal_channels"))
    parser.add_argument("--cases", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = pathlib.Path(folder)
        simulator.write(work / "heldout", args.cases, seed=1)
        data, study = dataset.open(work / "heldout"), uid.generate_uid()
        server = Orthanc(work / "orthanc")
        try:
            _upload(server, data, work, study)
            result = subprocess.run([sys.executable, str(ROOT / "tools/pacs.py"), args.model, study,
                                     "--url", server.dicomweb, "--out", str(work / "out")],
                                    env={**os.environ, "FETAL_PACS_USER": USER, "FETAL_PACS_PASSWORD": PASSWORD},
                                    capture_output=True, text=True)
            print(f"fetal-pacs exit status {result.returncode}")
            out = work / "out"
            sources = {pydicom.dcmread(p).SOPInstanceUID: p.stem for p in (out / "exam").glob("*.dcm")}
            equal, panel = 0, json.loads((out / "scans/infer.json").read_text())["panel"]
            for report in _reports(server, study):
                library = next(i for i in report.ContentSequence if i.ValueType == "CONTAINER"
                               and i.ConceptNameCodeSequence[0].CodeValue == "111028")
                if len(library.ContentSequence) > 1:  # the exam's SR: the panel
                    ac = panel["measurements"].get("AC", {}).get("mm")
                    print(f"exam: AC in the PACS's SR {sr.read_measurements(report).get('ac_mm')}, "
                          f"in infer.json's panel {ac} (mean of {panel['measurements'].get('AC', {}).get('scans')})")
                    continue
                scan = sources[library.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
                local = out / "scans" / f"{scan}.json"
                local = local if local.exists() else out / "loops" / scan / f"{scan}.json"
                mine, stored = json.loads(local.read_text())["ac_mm"], sr.read_measurements(report)["ac_mm"]
                equal += mine == stored
                print(f"{scan}: AC in the PACS's SR {stored}, in the local JSON {mine}")
            objects = sorted(out.rglob("dicom/*.dcm"))
            errors = sum(len(dciodvfy_errors(p)) for p in objects)
            print(f"{equal} of {len(sources)} SRs equal to the local result; {len(objects)} objects, "
                  f"{errors} dciodvfy errors")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
