"""Files in and out: scans (PNG, JPEG, DICOM) with their calibration, the dataset format every
later stage reads, Caffe LMDBs, and cine loops / sweeps read frame by frame (stack headers
parsed by the project before SimpleITK sees them).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "dicom": ("CM", "TISSUE", "COLOUR_FLOW", "SPATIAL_2D", "PLUGINS", "DicomError", "Region",
              "is_dicom", "to_uint8"),
    "scans": ("SOURCES", "ScanError", "ScanImage", "frame_count", "read_scans",
              "imread", "encode_png"),
    "dataset": ("FORMAT", "VERSION", "READABLE", "STRUCTURES", "FAN_TOLERANCE", "AC_TOLERANCE",
                "Biometry", "Scan", "Case", "DatasetError", "read_image", "case_record",
                "parse_case_record", "Record", "Dataset", "open", "validate", "write_case",
                "write_dataset"),
    "lmdb_writer": ("to_datum", "from_datum", "write", "read", "count"),
    "limits": ("MAX_FRAME_PIXELS", "MAX_FRAMES", "MAX_RATIO", "SPACING_MM", "HELP", "BudgetError",
               "check_frames", "check_spacing", "check_bytes"),
    "stacks": ("SUFFIXES", "StackError", "Header", "read_header"),
    "sequences": ("CHUNK_BYTES", "STACKS", "VIDEOS", "SequenceError", "Sequence",
                  "open_sequence", "VideoWriter"),
})
