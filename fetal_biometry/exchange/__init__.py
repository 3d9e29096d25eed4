"""Results where others read them: DICOM SR and SEG, NRRD masks, and a PACS over DICOMweb.

- :mod:`~fetal_biometry.exchange.codes`: the coded concepts (LOINC, DCM, SNOMED CT)
- :mod:`~fetal_biometry.exchange.source`: a source DICOM's header (the one reader of its patient module)
- :mod:`~fetal_biometry.exchange.sr`: measurements as a Comprehensive SR (TID 5000)
- :mod:`~fetal_biometry.exchange.seg`: class maps as DICOM SEG; a cine frame as an image of its own
- :mod:`~fetal_biometry.exchange.scan`: the objects of one measured scan, written to ``OUT/dicom``
- :mod:`~fetal_biometry.exchange.nrrd`: class maps and probabilities as NRRD for research viewers
- :mod:`~fetal_biometry.exchange.pacs`: find, fetch and store exams over DICOMweb
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "algorithm": ("MANUFACTURER", "Algorithm"),
    "codes": ("code", "Quantity", "MEASUREMENTS", "EQUATIONS", "CLASS_CODES", "class_codes",
              "record_from_panel"),
    "source": ("ULTRASOUND", "REQUIRED", "SourceError", "read_source", "quiet", "frames"),
    "sr": ("SERIES_NUMBER", "COMMENT", "Reference", "measured", "biometry_report",
           "read_measurements"),
    "seg": ("FRAME_DESCRIPTION", "frame_image", "segmentation", "class_map"),
    "scan": ("FOLDER", "scan_objects", "write_objects", "exam_objects"),
    "nrrd": ("write_nrrd", "origin_mm"),
    "pacs": ("STATE", "PacsError", "check_url", "session", "Instance", "Pacs", "outbox",
             "new_outbox", "send_outbox"),
})
