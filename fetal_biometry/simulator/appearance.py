"""Domain randomisation: the documented, seeded ranges a simulated case draws its appearance from.

An :class:`Appearance` holds one range per randomised property, in two halves:
:class:`PhysicsRanges` (transducer, tissue scattering, receiver and display, artefacts;
drawn in :mod:`~fetal_biometry.simulator.physics`) and :class:`AnatomyRanges` (echogenicity,
maternal layers, distractors, unfit planes; drawn in :mod:`~fetal_biometry.simulator.anatomy`).
Every field names the *group* it belongs to (``dataclasses.field(metadata={"group": ...})``),
so an ablation can switch one group back to the narrow first-round value
(:meth:`Appearance.without`).

Presets: :data:`NARROW` (the first round's simulator: every range at the value it had),
:data:`TRAINING` (the widened ranges training sets are drawn from) and :data:`FOREIGN` (a
check set drawn *outside* the training ranges, never trained on).
"""
from __future__ import annotations

import dataclasses


def _field(default, group: str, doc: str):
    """A range field: ``default`` (a value or a (low, high) pair), its group and what it is."""
    return dataclasses.field(default=default, metadata={"group": group, "doc": doc})


@dataclasses.dataclass(frozen=True)
class PhysicsRanges:
    """Ranges of the imaging physics (filled in by the physics work)."""


@dataclasses.dataclass(frozen=True)
class AnatomyRanges:
    """Ranges of the anatomy (filled in by the anatomy work)."""


@dataclasses.dataclass(frozen=True)
class Appearance:
    """Everything a case's appearance is drawn from; ``name`` goes into dataset.json."""

    name: str = "training"
    physics: PhysicsRanges = PhysicsRanges()
    anatomy: AnatomyRanges = AnatomyRanges()

    def groups(self) -> tuple[str, ...]:
        """The randomisation groups, in field order."""
        seen = []
        for part in (self.physics, self.anatomy):
            for f in dataclasses.fields(part):
                if f.metadata["group"] not in seen:
                    seen.append(f.metadata["group"])
        return tuple(seen)

    def without(self, group: str) -> "Appearance":
        """This appearance with ``group``'s ranges back at their :data:`NARROW` values."""
        if group not in self.groups():
            raise ValueError(f"unknown randomisation group {group!r}; choose one of {self.groups()}")
        parts = {}
        for key, narrow in (("physics", NARROW.physics), ("anatomy", NARROW.anatomy)):
            part = getattr(self, key)
            parts[key] = dataclasses.replace(part, **{
                f.name: getattr(narrow, f.name) for f in dataclasses.fields(part)
                if f.metadata["group"] == group})
        return dataclasses.replace(self, name=f"{self.name} without {group}", **parts)

    def to_dict(self) -> dict:
        """A JSON-able record (dataset.json's ``generator.appearance``)."""
        return {"name": self.name, "physics": dataclasses.asdict(self.physics),
                "anatomy": dataclasses.asdict(self.anatomy)}


NARROW = Appearance("narrow")
TRAINING = Appearance("training")
FOREIGN = Appearance("foreign")
PRESETS = {a.name: a for a in (NARROW, TRAINING, FOREIGN)}
