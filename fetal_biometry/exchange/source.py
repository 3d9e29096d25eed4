"""The source of a scan as DICOM objects need it: study, patient, series and the image's identity.

This is the one reader of a DICOM file's patient module. The SR and SEG written from a scan
belong to the scan's patient, so they carry the same patient and study modules; nothing read
here goes anywhere else (the JSON, logs and pictures keep to :mod:`fetal_biometry.io.dicom`'s rule:
no attribute that identifies a person).
"""
from __future__ import annotations

import contextlib
import os
import warnings

from pydicom.dataset import Dataset

#: Image storage classes a scan may come from (ultrasound, single- and multi-frame).
ULTRASOUND = {"1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
              "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage"}
#: What an SR or SEG cannot be written without.
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class SourceError(ValueError):
    """A source file that cannot be referenced by DICOM objects; the caller names the file."""


def read_source(path: str | os.PathLike) -> Dataset:
    """The DICOM header of ``path`` without its pixels (patient, study, series, image).

    Raises
    ------
    SourceError
        Not readable, or without the identities an SR or SEG must reference.
    """
    import pydicom

    try:
        with quiet():
            header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types for broken files
        raise SourceError(f"unreadable DICOM: {error}") from None
    missing = [keyword for keyword in REQUIRED if not header.get(keyword)]
    if missing:
        raise SourceError(f"no {', '.join(missing)} in the file: DICOM objects that reference "
                          "it cannot be written (leave out --dicom-out)")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        if keyword not in header:  # type 2 in every IOD written here: present, maybe empty
            setattr(header, keyword, "")
    return header


@contextlib.contextmanager
def quiet():
    """Silence warnings while a patient's attributes are handled: pydicom's and highdicom's may
    quote attribute values (a name, a birth date) into a log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def frames(header: Dataset) -> int:
    return int(header.get("NumberOfFrames") or 1)
