"""The class map of one scan as a DICOM Segmentation (binary, one segment per class).

Segment numbers are the class values of the map (1 amniotic fluid, 2 stomach bubble, ... as the
model's class table says); background and outside the fan are pixels in no segment, as DICOM
SEG defines background. Each segment is coded by :func:`fetal_biometry.exchange.codes.class_codes`
and names the model as its algorithm.

A SEG references a single-frame image: highdicom (and viewers) need a frame of reference to
place a SEG over one frame of a cine loop, and ultrasound cine has none. So for a cine loop the
measured frame is first written as an image of its own (:func:`frame_image`: Ultrasound Image
Storage, derived from the loop, with its calibration regions), and the SEG references that.
"""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from fetal_biometry.exchange import codes
from fetal_biometry.exchange.algorithm import MANUFACTURER, Algorithm

SEG_SERIES, FRAME_SERIES = 901, 900
FRAME_DESCRIPTION = "measured frames (fetal biometry)"  # the series of frames written here
# Copied from a cine loop into the image of one of its frames: the equipment and the
# calibration (same pixels, same geometry).
_COPIED = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions",
           "SequenceOfUltrasoundRegions", "PixelSpacing", "BurnedInAnnotation")


def frame_image(header: Dataset, frame: int, pixels: np.ndarray) -> Dataset:
    """Frame ``frame`` (0-based) of the cine loop in ``header``, as displayed (``pixels``,
    (H, W, 3) uint8 RGB), as a single-frame ultrasound image derived from the loop."""
    from highdicom import base  # the patient and study modules, copied as for any SOP

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    carrier = base.SOPClass(header.StudyInstanceUID, generate_uid(), FRAME_SERIES, ds.SOPInstanceUID,
                            ds.SOPClassUID, int(header.get("InstanceNumber") or 1), "US",
                            header.get("Manufacturer") or MANUFACTURER)
    carrier.copy_patient_and_study_information(header)
    ds.update(carrier)
    for keyword in _COPIED:
        if keyword in header:
            ds[keyword] = header[keyword]
    ds.Modality, ds.SeriesDescription = "US", FRAME_DESCRIPTION
    ds.Manufacturer = header.get("Manufacturer", "")
    # Type 2C; dciodvfy cannot tell whether the body part is paired, so it wants it present.
    ds.Laterality = header.get("Laterality", "")
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = f"frame {frame + 1} of a cine loop, as displayed (RGB)"
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
    reference.ReferencedFrameNumber = frame + 1
    ds.SourceImageSequence = [reference]
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint8).tobytes()
    return ds


def segmentation(image: Dataset, labels: np.ndarray, classes, algorithm: Algorithm) -> Dataset:
    """A binary SEG of ``labels`` ((rows, columns) class values on ``image``'s grid, 255 and 0
    in no segment) over the single-frame ``image``; ``classes`` the class names by value."""
    import highdicom as hd

    if labels.shape != (image.Rows, image.Columns):
        raise ValueError(f"class map of {labels.shape[1]}x{labels.shape[0]} px on an image of "
                         f"{image.Columns}x{image.Rows}")
    identity = hd.AlgorithmIdentificationSequence(algorithm.name, codes.ARTIFICIAL_INTELLIGENCE,
                                                  algorithm.version, MANUFACTURER,
                                                  dict(p.split("=", 1) for p in algorithm.parameters))
    segments, masks = [], []
    for value, name in enumerate(classes):
        if value == 0:  # background: in no segment
            continue
        category, kind = codes.class_codes(name)
        segments.append(hd.seg.SegmentDescription(
            value, name.replace("_", " ")[:64], category, kind,
            hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, identity))
        masks.append(labels == value)
    seg = hd.seg.Segmentation(
        [image], np.stack(masks, axis=-1)[None], hd.seg.SegmentationTypeValues.BINARY, segments,
        generate_uid(), SEG_SERIES, generate_uid(), int(image.get("InstanceNumber") or 1),
        MANUFACTURER, algorithm.name, algorithm.version, "1", omit_empty_frames=False,
        series_description="class map (fetal biometry)")
    seg.PatientOrientation = ""  # type 2C without a frame of reference
    return seg


def class_map(seg: Dataset) -> np.ndarray:
    """The class values of a SEG written by :func:`segmentation` ((rows, columns) uint8; 0 in
    no segment)."""
    import highdicom as hd

    seg = hd.seg.Segmentation.from_dataset(seg) if not isinstance(seg, hd.seg.Segmentation) else seg
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence]
    image = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    masks = seg.get_pixels_by_source_instance([image], segment_numbers=numbers)[0]
    labels = np.zeros(masks.shape[:2], np.uint8)
    for index, number in enumerate(numbers):
        labels[masks[..., index] > 0] = number
    return labels
