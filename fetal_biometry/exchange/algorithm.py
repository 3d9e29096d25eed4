"""Which model measured: the identity DICOM objects state as their algorithm (TID 4019, SEG)."""
from __future__ import annotations

import dataclasses
import hashlib

from fetal_biometry import __version__

MANUFACTURER = "fetal-biometry"


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A model folder as an algorithm: its name, a version that changes with its weights, and
    the settings that decide its output (``parameters``, ``key=value`` strings)."""

    name: str
    version: str
    parameters: tuple[str, ...]
    uid: str  # the device observer UID of the SR: the same model gives the same UID

    @classmethod
    def from_model(cls, model) -> "Algorithm":
        """Of a loaded model folder (:func:`fetal_biometry.nets.model.load`)."""
        from pydicom.uid import generate_uid

        digest = hashlib.sha256(model.weights.read_bytes()).hexdigest()
        version = f"{__version__} weights sha256:{digest[:16]}"
        parameters = (f"encoding={model.encoding}", f"spacing_mm={model.spacing_mm:g}",
                      f"classes={','.join(model.classes)}",
                      f"trained_at={model.record.get('training', {}).get('trained_at', 'unknown')}")
        return cls(f"{MANUFACTURER} {model.root.name}"[:64], version[:64], parameters,
                   generate_uid(entropy_srcs=[digest]))
