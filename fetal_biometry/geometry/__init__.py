"""The probe's geometry: the sector (fan) of a curvilinear or linear probe and the beam direction
at every pixel (:mod:`~fetal_biometry.geometry.probe`), the fan found in an image when no
geometry is given (:mod:`~fetal_biometry.geometry.fan`, with the echo region in
:mod:`~fetal_biometry.geometry.fan_region` and the side edges in
:mod:`~fetal_biometry.geometry.fan_edges`; real screens with hand-checked fans to
judge it by, :mod:`~fetal_biometry.geometry.fan_reference`), and scans resampled to another pixel
spacing with their geometry (:mod:`~fetal_biometry.geometry.resample`).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "probe": ("ConvexProbe", "LinearProbe", "Geometry", "lateral_range", "beam_to_image",
              "image_to_beam", "fan_mask", "beam_directions", "beam_samples", "scan_convert",
              "problems", "to_dict", "from_dict", "read_file"),
    "fan": ("PARALLEL_DEG", "MAX_EDGE_DEG", "MAX_INWARD_DEG", "MAX_CHROMA", "MIN_FILL",
            "MIN_CONFIDENCE", "MIN_TEXTURE", "MAX_SIDE", "FanNotFound", "detect_fan", "Line",
            "estimate_geometry", "Priors", "priors_from", "Estimate", "estimate_scan", "probe_of"),
    "fan_reference": ("Reference", "read_manifest", "read_image", "score", "text_panel",
                      "blank_frame", "negatives"),
    "resample": ("scale_factor", "shape", "geometry", "image", "labels", "back"),
})
