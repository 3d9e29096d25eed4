"""Annotations in: labelling tools' exports and HC18's public layout -> the dataset format.

One small reader per format (:mod:`~fetal_biometry.importers.cvat`, ``labelme``, ``coco``,
``masks``, ``hc18``; found by format name in :data:`READERS`) turns its files into
:class:`Annotation` records (shapes in the project's coordinates: pixel centres at integers);
one builder (:func:`build_case`, with the polygon geometry of
:mod:`~fetal_biometry.importers.polygons`) turns an annotation, its image, pixel spacing and
probe geometry into a :class:`dataset.Case`;
:func:`import_dataset` gathers every problem of every image first and writes the dataset
(aside, then renamed) only when there are none.

Formats (:data:`FORMATS`)
-------------------------
``cvat``
    CVAT "for images 1.1" XML (``annotations.xml``): ``<image name width height>`` holding
    ``<polygon points="x,y;x,y">``, ``<ellipse cx cy rx ry rotation>``, ``<polyline>``,
    ``<box xtl ytl xbr ybr rotation>``, ``<mask rle left top width height>`` (run lengths over
    the mask's box, row by row, starting with a run of zeros) and image-level ``<tag>``; shapes
    are drawn in ``z_order``, ties in the class order below. Coordinates are continuous with
    the image's top-left corner at (0, 0), so a pixel centre sits at +0.5.
    Not supported: ``<points>``, ``<cuboid>``, ``<skeleton>`` and video tracks (an error
    names them, unless --classes maps their label to null).
``labelme``
    A folder of LabelMe JSON files: ``shapes`` of ``shape_type`` polygon, rectangle, circle
    (centre and a rim point), line / linestrip (outlines, see polylines below) and mask
    (``points`` its box, ``mask`` a base64 PNG); ``imagePath`` relative to the JSON; shapes
    drawn in list order; image-level ``flags``. Coordinates as on LabelMe's canvas (pixel
    centres at +0.5). Not supported: ``point`` shapes; ``imageData`` is not read (the image
    file is).
``coco``
    COCO instances JSON: ``images``, ``categories`` (by name) and ``annotations`` whose
    ``segmentation`` is a list of polygons, an RLE (``counts`` a list) or a compressed RLE
    (``counts`` a string), both column-major over ``size`` [h, w]. COCO has no drawing order:
    overlaps are layered by the class order below. Coordinates as CVAT's. The plane verdict
    may ride on an image entry as extra fields ``plane_acceptable`` (boolean) and
    ``plane_reason``. ``bbox``, ``area``, ``keypoints`` and ``iscrowd`` are not used.
``masks``
    A folder of label-map PNGs (``STEM.png`` for image ``STEM``) and a JSON map from their
    values to class names (``--values``; default the dataset's own table, 255 ignored).
``hc18``
    HC18's layout: ``NNN_HC.png`` beside its ``NNN_HC_Annotation.png`` (the skull's ellipse
    drawn as a ring), pixel sizes from ``--spacing-csv``. The ring's pixels are fitted to an
    ellipse (the residual recorded); the case is a head plane (see :mod:`fetal_biometry.dataset`)
    and its label map holds background inside the fan and 255 outside.

Labels, layers, biometry
------------------------
A shape's label maps to a class of the table by ``classes`` (``--classes MAP.json``, e.g.
``{"SB": "stomach_bubble", "calipers": null}``; null ignores the label), else by the table's
own names, case-insensitive. Overlapping regions are painted in :data:`LAYERS` order:
background, amniotic fluid, abdomen, the organs and the brain's parts, shadow, spine, rib,
skull, femur, stomach bubble, umbilical vein on top (so an outer-contour polygon of a region
containing smaller ones is fine). Pixels outside the
probe's fan become 255; a shape reaching more than the format's tolerance
(:data:`FAN_TOLERANCE_PX`) outside the fan is an error, not silently cut.

Exactly one abdomen per image: an ellipse gives the AC ellipse exactly; a polygon, polyline
(an outline, e.g. the visible stretch of skin) or mask is fitted (:func:`ellipse.fit`, the
RMS residual recorded; a mask's outline is taken along its pixel edges against background
or fluid only: elsewhere, against shadow, an organ, the fan's edge or the image border, it
is no skin line). A polyline of another label is an error: regions need areas. The plane
verdict comes from an image-level tag or attribute ``plane_acceptable`` /
``plane_unacceptable`` (CVAT: a ``<tag>`` with a ``reason`` attribute, or a shape attribute
``plane_acceptable`` true/false with ``plane_reason``; LabelMe: a flag), else it is derived:
acceptable when both a stomach bubble and an umbilical vein are annotated inside the
abdomen ellipse, the reason written either way. Only abdominal planes come from the tools'
formats; head planes only from HC18.

Images, spacing, probe
----------------------
Images are read by :func:`fetal_biometry.scans.read_scans`: PNG, JPEG, ... or DICOM (``frame``
of a cine loop). A DICOM scan in a calibrated ultrasound region is cropped to it and the
annotations, drawn on the whole frame, move with the crop; a file of several regions, or
with non-square pixels (resampled by the reader), is refused. The spacing comes from the
CSV (HC18's convention), else ``spacing_mm`` for all, either checked against a DICOM's own
calibration, which serves when neither is given. The probe geometry (of the scan as read,
i.e. of the crop) comes from one JSON for all or a folder of ``STEM.json``, else from
:func:`fetal_biometry.geometry.fan.estimate_scan` (a note says so, with its confidence; the
file's transducer and reference pixel as priors; ``accept_fan_below`` takes weaker fans);
``skip_bad`` writes the images that import and lists the others in ``source.skipped``.
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "annotation": ("FORMATS", "GENERATOR", "TOOL", "LAYERS", "FAN_TOLERANCE_PX", "IMAGE_TOLERANCE_PX",
                   "ACCEPTABLE", "UNACCEPTABLE", "HC18_REASON", "IMAGE_SUFFIXES",
                   "AnnotationError", "Shape", "Annotation", "Read", "sha256"),
    "cvat": ("cvat_rle_decode", "read_cvat"),
    "labelme": ("read_labelme",),
    "coco": ("coco_rle_counts", "coco_rle_decode", "read_coco"),
    "masks": ("read_values", "read_masks"),
    "hc18": ("read_hc18", "read_spacing_csv"),
    "polygons": ("fill_rings", "rasterize", "edge_points"),
    "build": ("Inputs", "build_case", "class_mapper", "case_name"),
    "registry": ("Options", "READERS", "read_annotations"),
    "convert": ("claim_output", "import_dataset"),
})
