"""The biometry of one scan as a DICOM Comprehensive SR following TID 5000 (OB-GYN ultrasound).

highdicom implements TID 1500, not TID 5000; the OB-GYN template is assembled here from its
building blocks (containers, NUM and CODE items, TID 300 measurements, TID 1001 observation
context, TID 4019 algorithm identification)::

    CONTAINER OB-GYN Ultrasound Procedure Report (TID 5000)
      HAS CONCEPT MOD   language (TID 1204)
      HAS OBS CONTEXT   device observer: the model (TID 1001/1002/1004)
      CONTAINS CONTAINER Image Library > IMAGE the source (its frame for a cine loop)
      CONTAINS CONTAINER Summary (TID 5002/5003) > NUM Estimated Weight, g > equation
      CONTAINS CONTAINER Fetal Biometry Ratios (TID 5004) > NUM Cephalic Index
      CONTAINS CONTAINER Fetal Biometry (TID 5005)
        CONTAINS CONTAINER Biometry Group (TID 5008), one per measurement
          NUM BPD/OFD/HC/AC, mm (TID 300): derivation Measured, the algorithm (TID 4019),
              the ellipse it was measured on (SCOORD ELLIPSE on the source image);
              or, tried and not made, no value and the qualifier "Measurement failure"
          NUM Gestational Age, d > INFERRED FROM the equation (CID 12013)
          NUM Growth Percentile Rank / Z-score
          TEXT Comment: the reasons, when the plane or the AC was not accepted
      CONTAINS CONTAINER Fetal Long Bones (TID 5006) > Biometry Group > NUM FL ...

The record is the scan's JSON (:mod:`fetal_biometry.exchange.codes` says which keys are read);
:func:`read_measurements` reads the values back.
"""
from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fetal_biometry.exchange import codes
from fetal_biometry.exchange.algorithm import MANUFACTURER, Algorithm

SERIES_NUMBER = 902  # SRs of this tool in a study
COMMENT = codes.code("121106", "DCM", "Comment")


def _hd():
    import highdicom  # imported here: only DICOM output needs it

    return highdicom


def _num(concept, value: float, unit, relationship: str = "CONTAINS"):
    return _hd().sr.NumContentItem(concept, float(value), unit, relationship_type=relationship)


def _container(concept, items, template: str | None = None):
    sr = _hd().sr
    container = sr.ContainerContentItem(concept, template_id=template, relationship_type="CONTAINS")
    container.ContentSequence = sr.ContentSequence(items)
    return container


def _with(item, children):
    item.ContentSequence = _hd().sr.ContentSequence(children)
    return item


def _equation(name: str | None):
    """The INFERRED FROM equation item, or None for a name without a code."""
    if name not in codes.EQUATIONS:
        return None
    return _hd().sr.CodeContentItem(codes.EQUATION, codes.EQUATIONS[name], relationship_type="INFERRED FROM")


def _ellipse_points(ellipse: dict, offset: tuple[float, float], scale: tuple[float, float]) -> np.ndarray:
    """The four end points of the ellipse's axes (major first, as SCOORD ELLIPSE wants) in the
    source image's (column, row) pixels; ``offset`` and ``scale`` map scan to image pixels."""
    (cx, cy), (a, b), angle = ellipse["center"], ellipse["semi_axes"], math.radians(ellipse["angle_deg"])
    if b > a:
        a, b, angle = b, a, angle + math.pi / 2
    axes = [(math.cos(angle), math.sin(angle)), (-math.sin(angle), math.cos(angle))]
    points = [(cx + sign * r * ux, cy + sign * r * uy)
              for r, (ux, uy) in zip((a, b), axes) for sign in (-1, 1)]
    return np.array([((x + 0.5) * scale[0] + offset[0], (y + 0.5) * scale[1] + offset[1])
                     for x, y in points], np.float32)


class Reference:
    """Where the measured pixels are: the source image (and its frame), and how scan pixels map
    onto it (the crop of a calibrated region, resampling of non-square pixels)."""

    def __init__(self, header: Dataset, frame: int | None, offset=(0.0, 0.0), scale=(1.0, 1.0)):
        self.header, self.frame = header, frame
        self.offset, self.scale = offset, scale

    @property
    def frame_numbers(self) -> list[int] | None:
        return None if self.frame is None else [self.frame + 1]

    def image_item(self):
        sr = _hd().sr
        return sr.ImageContentItem(codes.SOURCE_OF_MEASUREMENT, self.header.SOPClassUID,
                                   self.header.SOPInstanceUID, self.frame_numbers,
                                   relationship_type="CONTAINS")

    def region(self, ellipse: dict):
        sr = _hd().sr
        image = sr.SourceImageForRegion(self.header.SOPClassUID, self.header.SOPInstanceUID,
                                        self.frame_numbers)
        return sr.CoordinatesForMeasurement(sr.GraphicTypeValues.ELLIPSE,
                                            _ellipse_points(ellipse, self.offset, self.scale), image)


def _not_measured(quantity: codes.Quantity):
    """A NUM qualified as a measurement failure (CID 42); its placeholder value is emptied by
    :func:`_empty_failures` once highdicom, which reads no NUM without a value, has built the SR."""
    return _hd().sr.NumContentItem(quantity.concept, 0, quantity.unit, codes.MEASUREMENT_FAILURE,
                                   relationship_type="CONTAINS")


def _empty_failures(items) -> None:
    for item in items:
        if item.ValueType == "NUM" and "NumericValueQualifierCodeSequence" in item:
            item.MeasuredValueSequence = []
        if "ContentSequence" in item:
            _empty_failures(item.ContentSequence)


def _group(quantity: codes.Quantity, record: dict, algorithm: Algorithm, references: list):
    """A Biometry Group (TID 5008): the measurement (or its failure), its age, its rank, and the
    reasons when the plane or the measurement was not accepted."""
    sr = _hd().sr
    name = quantity.key.removesuffix("_mm")
    if record[quantity.key] is None:
        items = [_not_measured(quantity)]
    else:
        algorithm_id = sr.AlgorithmIdentification(algorithm.name, algorithm.version,
                                                  list(algorithm.parameters))
        ellipse = record.get("ellipse") if quantity.key == "ac_mm" else record.get(f"{name}_ellipse")
        region = [references[0].region(ellipse)] if ellipse and len(references) == 1 else None
        mean = record.get(f"{name}_scans", 1) > 1  # an exam's mean over its accepted scans
        items = list(sr.Measurement(
            quantity.concept, float(record[quantity.key]), quantity.unit,
            derivation=codes.MEAN if mean else codes.MEASURED, algorithm_id=algorithm_id,
            referenced_coordinates=region))
    weeks = record.get(f"{name}_ga_weeks")
    if weeks is not None:
        equation = _equation(record.get(f"{name}_ga_equation"))
        age = _num(codes.GESTATIONAL_AGE, float(weeks) * 7, codes.DAY)
        items.append(_with(age, [equation]) if equation is not None else age)
    for key, concept, unit in ((f"{name}_centile", codes.PERCENTILE_RANK, codes.PERCENT),
                               (f"{name}_z", codes.Z_SCORE, codes.NO_UNITS)):
        if record.get(key) is not None:
            items.append(_num(concept, record[key], unit))
    if quantity.key == "ac_mm" and (record["ac_mm"] is None or record.get("plane_acceptable") is False):
        verdict = "AC" if record["ac_mm"] is None else "plane not acceptable"
        reasons = "; ".join(record.get("reasons", [])) or "no reason given"
        items.append(sr.TextContentItem(COMMENT, f"{verdict}: {reasons}"[:1024],
                                        relationship_type="CONTAINS"))
    return _container(codes.BIOMETRY_GROUP, items, "5008")


def _sections(record: dict, algorithm: Algorithm, references: list) -> list:
    """The sections of TID 5000 that the record fills, in the template's order."""
    present = [q for q in codes.MEASUREMENTS.values() if q.key in record]
    sections = []
    for section, template in ((codes.SUMMARY, "5002"), (codes.FETAL_BIOMETRY_RATIOS, "5004"),
                              (codes.FETAL_BIOMETRY, "5005"), (codes.FETAL_LONG_BONES, "5006")):
        members = [q for q in present if q.section == section]
        if not members:
            continue
        if section in (codes.SUMMARY, codes.FETAL_BIOMETRY_RATIOS):
            items = []
            for q in members:
                if record[q.key] is None:
                    items.append(_not_measured(q))
                    continue
                equation = _equation(record.get(q.key.removesuffix("_g") + "_equation"))
                value = _num(q.concept, record[q.key], q.unit)
                items.append(_with(value, [equation]) if equation is not None else value)
        else:
            items = [_group(q, record, algorithm, references) for q in members]
        sections.append(_container(section, items, template))
    return sections


def measured(record: dict) -> bool:
    """Whether the record holds any measurement a report states (measured or failed: a key
    present with None is a measurement tried and not made)."""
    return any(key in record for key in codes.MEASUREMENTS)


def biometry_report(header: Dataset, record: dict, algorithm: Algorithm,
                    references: list[Reference]) -> Dataset:
    """A Comprehensive SR (TID 5000) of the record's measurements of the scans ``references``
    point at: one scan's record, or an exam's (:func:`fetal_biometry.exchange.codes.record_from_panel`).

    ``header`` is a source's (:func:`fetal_biometry.exchange.source.read_source`): the SR gets
    its patient and study; the Image Library lists every reference.
    """
    sr = _hd().sr
    observer = sr.ObserverContext(
        codes.code("121007", "DCM", "Device"),
        sr.DeviceObserverIdentifyingAttributes(algorithm.uid, name=algorithm.name,
                                               manufacturer_name=MANUFACTURER,
                                               model_name=algorithm.version))
    root = sr.ContainerContentItem(codes.REPORT, template_id="5000")
    root.ContentSequence = sr.ContentSequence([
        *sr.LanguageOfContentItemAndDescendants(codes.code("en-US", "RFC5646", "English (United States)")),
        *sr.ObservationContext(observer_device_context=observer),
        _container(codes.IMAGE_LIBRARY, [r.image_item() for r in references]),
        *_sections(record, algorithm, references)])
    evidence = {header.SOPInstanceUID: header} | {r.header.SOPInstanceUID: r.header for r in references}
    report = sr.ComprehensiveSR(
        list(evidence.values()), root, series_instance_uid=generate_uid(), series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=int(header.get("InstanceNumber") or 1),
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description="fetal biometry (automated)")
    _empty_failures(report.ContentSequence)
    return report


def read_measurements(report: Dataset) -> dict:
    """The measurements of an SR written by :func:`biometry_report`, as record keys: ``ac_mm``,
    ... and ``NAME_ga_weeks`` where a gestational age is stated."""
    by_code = {(q.concept.value, q.concept.scheme_designator): q.key
               for q in codes.MEASUREMENTS.values()}
    age = (codes.GESTATIONAL_AGE.value, codes.GESTATIONAL_AGE.scheme_designator)
    found: dict = {}

    def value(item) -> float | None:
        if not item.MeasuredValueSequence:  # not measured
            return None
        measured_value = item.MeasuredValueSequence[0]
        if "FloatingPointValue" in measured_value:
            return float(measured_value.FloatingPointValue)
        return float(measured_value.NumericValue)

    def walk(items) -> None:
        key = None  # the measurement of the group being read: a group's age follows it
        for item in items:
            concept = item.ConceptNameCodeSequence[0]
            ident = concept.CodeValue, concept.CodingSchemeDesignator
            if item.ValueType == "NUM" and ident in by_code:
                key = by_code[ident]
                found[key] = value(item)
            elif item.ValueType == "NUM" and ident == age and key is not None:
                found[f"{key.removesuffix('_mm')}_ga_weeks"] = value(item) / 7 if value(item) else None
            elif item.ValueType == "CONTAINER" and "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(report.ContentSequence)
    return found
