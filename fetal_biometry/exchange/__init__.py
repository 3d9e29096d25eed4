"""Results where others read them: DICOM SR and SEG, NRRD masks, and a PACS over DICOMweb.

- :mod:`~fetal_biometry.exchange.codes`: the coded concepts (LOINC, DCM, SNOMED CT)
- :mod:`~fetal_biometry.exchange.source`: a source DICOM's header (the one reader of its patient module)
- :mod:`~fetal_biometry.exchange.sr`: measurements as a Comprehensive SR (TID 5000)
- :mod:`~fetal_biometry.exchange.seg`: class maps as DICOM SEG; a cine frame as an image of its own
- :mod:`~fetal_biometry.exchange.scan`: the objects of one measured scan, written to ``OUT/dicom``
- :mod:`~fetal_biometry.exchange.nrrd`: class maps and probabilities as NRRD for research viewers
- :mod:`~fetal_biometry.exchange.pacs`: find, fetch and store exams over DICOMweb
"""
