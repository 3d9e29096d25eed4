"""The coded concepts of the DICOM objects: what each measurement, class and equation is called.

Measurements are coded as DICOM PS3.16 lists them for the OB-GYN ultrasound report (TID 5000):
LOINC for the biometry (CID 12005 Fetal Biometry Measurements, CID 12006 Fetal Long Bones,
CID 12004 Fetal Biometry Ratios, CID 12019 OB-GYN Fetus Summary) and the equations of gestational
age (CID 12013) and fetal weight (CID 12014); DCM for the report's containers. Classes of a class
map are coded for DICOM SEG with SNOMED CT (CID 7150 categories, CID 7151 types) where a code
exists; a class without one keeps its name under the private scheme :data:`PRIVATE`.

The SR writer reads a record whose keys :data:`MEASUREMENTS` names: a scan's JSON (``ac_mm``),
or an exam's biometry panel turned into them by :func:`record_from_panel` (``hc_mm``,
``bpd_mm``, ``ofd_mm``, ``fl_mm``, ``cephalic_index``, ``efw_g``); beside a length ``NAME_mm``
it may give ``NAME_ga_weeks`` (the gestational age it suggests), ``NAME_ga_equation``,
``NAME_centile`` and ``NAME_z`` (at a gestational age the user gave) and ``NAME_scans`` (how many
scans it is the mean of); ``efw_g`` may come with ``efw_equation``. A key present with None (``"ac_mm": null``) is a
measurement tried and not made: the SR states it as a measurement failure with the reasons. Equation names are the code meanings of
:data:`EQUATIONS` (e.g. ``"AC, Hadlock 1984"``); one not listed is reported without its code.
"""
from __future__ import annotations

import dataclasses

from highdicom.sr import CodedConcept

PRIVATE = "99FETALBIOMETRY"  # coding scheme of class names that have no SNOMED CT code


def code(value: str, scheme: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, scheme, meaning)


# Containers and items of TID 5000 and the templates it includes.
REPORT = code("125000", "DCM", "OB-GYN Ultrasound Procedure Report")
IMAGE_LIBRARY = code("111028", "DCM", "Image Library")
SUMMARY = code("121111", "DCM", "Summary")  # TID 5002
FETAL_BIOMETRY = code("125002", "DCM", "Fetal Biometry")  # TID 5005
FETAL_LONG_BONES = code("125003", "DCM", "Fetal Long Bones")  # TID 5006
FETAL_BIOMETRY_RATIOS = code("125001", "DCM", "Fetal Biometry Ratios")  # TID 5004
BIOMETRY_GROUP = code("125005", "DCM", "Biometry Group")  # TID 5008
GESTATIONAL_AGE = code("18185-9", "LN", "Gestational Age")
EQUATION = code("121420", "DCM", "Equation")  # CID 228
PERCENTILE_RANK = code("125012", "DCM", "Growth Percentile Rank")  # CID 12017
Z_SCORE = code("125013", "DCM", "Growth Z-score")
MEASURED = code("258104002", "SCT", "Measured")  # CID 3627
MEAN = code("373098007", "SCT", "Mean")
SOURCE_OF_MEASUREMENT = code("121112", "DCM", "Source of Measurement")
MEASUREMENT_FAILURE = code("114006", "DCM", "Measurement failure")  # CID 42
ARTIFICIAL_INTELLIGENCE = code("123110", "DCM", "Artificial Intelligence")  # CID 7162

MM = code("mm", "UCUM", "millimeter")
GRAM = code("g", "UCUM", "gram")
DAY = code("d", "UCUM", "day")
PERCENT = code("%", "UCUM", "percent")
NO_UNITS = code("1", "UCUM", "no units")
RATIO = code("{ratio}", "UCUM", "ratio")


@dataclasses.dataclass(frozen=True)
class Quantity:
    """One measurement of the report: its key in the JSON record, concept, unit and section."""

    key: str
    name: str  # as sonographers say it: AC, HC, ...
    concept: CodedConcept
    unit: CodedConcept
    section: CodedConcept  # the TID 5000 section container it goes in


#: Record key -> measurement, in the order a report lists them.
MEASUREMENTS = {q.key: q for q in (
    Quantity("bpd_mm", "BPD", code("11820-8", "LN", "Biparietal Diameter"), MM, FETAL_BIOMETRY),
    Quantity("ofd_mm", "OFD", code("11851-3", "LN", "Occipital-Frontal Diameter"), MM, FETAL_BIOMETRY),
    Quantity("hc_mm", "HC", code("11984-2", "LN", "Head Circumference"), MM, FETAL_BIOMETRY),
    Quantity("ac_mm", "AC", code("11979-2", "LN", "Abdominal Circumference"), MM, FETAL_BIOMETRY),
    Quantity("fl_mm", "FL", code("11963-6", "LN", "Femur Length"), MM, FETAL_LONG_BONES),
    Quantity("cephalic_index", "CI", code("11823-2", "LN", "Cephalic Index"), RATIO, FETAL_BIOMETRY_RATIOS),
    Quantity("efw_g", "EFW", code("11727-5", "LN", "Estimated Weight"), GRAM, SUMMARY),
)}

#: Equation and table names (code meanings) -> codes: gestational age (CID 12013), fetal weight
#: (CID 12014). INTERGROWTH-21st has no code in these lists.
EQUATIONS = {c.meaning: c for c in (
    code("11892-7", "LN", "AC, Hadlock 1984"), code("11932-1", "LN", "HC, Hadlock 1984"),
    code("11902-4", "LN", "BPD, Hadlock 1984"), code("11920-6", "LN", "FL, Hadlock 1984"),
    code("33544-8", "LN", "OFD, Hansmann 1985"),
    code("11751-5", "LN", "EFW by AC, FL, Hadlock 1985"),
    code("11746-5", "LN", "EFW by AC, FL, HC, Hadlock 1985"),
    code("11735-8", "LN", "EFW by AC, BPD, FL, Hadlock 1985"),
    code("11732-5", "LN", "EFW by AC, BPD, FL, HC, Hadlock 1985"),
)}

ANATOMY = code("91723000", "SCT", "Anatomical Structure")
BODY_SUBSTANCE = code("91720002", "SCT", "Body Substance")
SPATIAL = code("309825002", "SCT", "Spatial and Relational Concept")

#: Class name (fetal_biometry.labels) -> (segment category, segment type).
CLASS_CODES = {
    "amniotic_fluid": (BODY_SUBSTANCE, code("77012006", "SCT", "Amniotic fluid")),
    "stomach_bubble": (ANATOMY, code("69695003", "SCT", "Stomach")),
    "umbilical_vein": (ANATOMY, code("284639000", "SCT", "Umbilical vein")),
    # An acoustic shadow is no body structure: SNOMED CT has no code; DICOM's ultrasound one.
    "shadow": (SPATIAL, code("111369", "DCM", "Posterior shadowing")),
    "abdomen": (ANATOMY, code("818981001", "SCT", "Abdomen")),
    "spine": (ANATOMY, code("421060004", "SCT", "Spine")),
    "rib": (ANATOMY, code("113197003", "SCT", "Rib")),
}


def class_codes(name: str) -> tuple[CodedConcept, CodedConcept]:
    """(category, type) of a class; a class without a standard code is labelled by its name."""
    if name in CLASS_CODES:
        return CLASS_CODES[name]
    return SPATIAL, code(name[:16], PRIVATE, name.replace("_", " "))


#: The biometry panel's keys (fetal_biometry.measure.growth) -> the record's names. BPD
#: outer-to-outer (INTERGROWTH-21st's convention) is reported where both BPDs were measured.
_PANEL_KEYS = {"AC": "ac", "HC": "hc", "BPD_OI": "bpd", "BPD_OO": "bpd", "OFD": "ofd", "FL": "fl"}
#: The panel's formula names -> the code meanings of :data:`EQUATIONS`.
_FORMULAS = {"Hadlock AC": "AC, Hadlock 1984", "Hadlock FL": "FL, Hadlock 1984",
             "Hadlock BPD_OI": "BPD, Hadlock 1984",
             "Hadlock 1985 AC, FL": "EFW by AC, FL, Hadlock 1985",
             "Hadlock 1985 AC, FL, HC": "EFW by AC, FL, HC, Hadlock 1985",
             "Hadlock 1985 AC, FL, BPD": "EFW by AC, BPD, FL, Hadlock 1985"}


def record_from_panel(panel: dict) -> dict:
    """The record keys above from an exam's panel (``infer.json``'s ``"panel"``,
    :func:`fetal_biometry.measure.growth.panel`): each measurement with the age it suggests and
    its centile and z-score, the estimated weight and the cephalic index."""
    record: dict = {}
    for key in sorted(panel.get("measurements", {}), key=lambda k: k == "BPD_OO"):  # OO last: wins
        entry, name = panel["measurements"][key], _PANEL_KEYS.get(key)
        if name is None:
            continue
        record[f"{name}_mm"] = entry["mm"]
        estimate = entry.get("ga_estimate") or {}
        record[f"{name}_ga_weeks"] = estimate.get("weeks")
        record[f"{name}_ga_equation"] = _FORMULAS.get(estimate.get("formula"), estimate.get("formula"))
        record[f"{name}_centile"], record[f"{name}_z"] = entry.get("centile"), entry.get("z")
        record[f"{name}_scans"] = entry.get("scans", 1)
    if panel.get("efw"):
        record["efw_g"] = panel["efw"]["grams"]
        record["efw_equation"] = _FORMULAS.get(panel["efw"]["formula"], panel["efw"]["formula"])
    if panel.get("cephalic_index") is not None:
        record["cephalic_index"] = panel["cephalic_index"]
    return record
