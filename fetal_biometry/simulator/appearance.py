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
    """Ranges of the anatomy, drawn in :func:`fetal_biometry.simulator.anatomy.draw_scene`.

    The defaults are the first round's simulator (:data:`NARROW`). Shares are probabilities
    per case; (low, high) pairs are drawn uniformly. Unfit-plane kinds are keys of
    :data:`fetal_biometry.simulator.anatomy.UNFIT`, drawn equally often among the unfit planes.
    """

    # echogenicity: fetal organs, walls and maternal layers
    echo_jitter_db: tuple[float, float] = _field(
        (0.0, 0.0), "echogenicity",
        "per-case echogenicity change of each echogenic soft tissue (liver, body wall, kidney, "
        "lung, heart, placenta, myometrium, maternal layers, cord jelly, limb), drawn per tissue: "
        "a magnitude in this range (dB), up or down at random")
    # maternal: the layers between probe and fetus
    fat_mm: tuple[float, float] = _field((3.0, 12.0), "maternal", "maternal subcutaneous fat (mm)")
    muscle_mm: tuple[float, float] = _field((4.0, 12.0), "maternal", "maternal abdominal muscle (mm)")
    placenta_mm: tuple[float, float] = _field((15.0, 35.0), "maternal", "placental thickness (mm)")
    anterior_placenta_share: float = _field(0.35, "maternal", "share of anterior placentas (above the fetus)")
    posterior_placenta_share: float = _field(
        0.5, "maternal", "share of posterior placentas (below the fetus) among the cases without an anterior one")
    # distractors: look-alikes of the landmarks
    cord_loop_share: float = _field(
        0.0, "distractors",
        "cases with free umbilical cord loops in the fluid (Wharton's jelly around a vein and two "
        "arteries: dark tubes like the umbilical vein, labelled background)")
    cord_loops_max: int = _field(1, "distractors", "at most this many loops in such a case (at least 1)")
    portal_vessel_share: float = _field(
        0.0, "distractors", "cases with branching portal vessels in the liver (dark tubes, labelled abdomen)")
    gallbladder_share: float = _field(
        0.0, "distractors", "cases with the gallbladder (anechoic, pear-shaped, fetal right; labelled abdomen)")
    kidney_share: float = _field(
        0.0, "distractors", "cases with the upper poles of the kidneys partly in plane (labelled abdomen)")
    limb_share: float = _field(
        0.0, "distractors",
        "cases with an arm or leg in the plane beside the abdomen, in the fluid (soft tissue and a "
        "bone that shadows; labelled background)")
    # unfit planes: kinds and how they look
    unfit_kinds: tuple[str, ...] = _field(
        ("no_stomach", "no_vein", "renal_level"), "unfit",
        "kinds of unfit plane, equally likely among the unfit ones (anatomy.UNFIT: reasons)")
    oblique_ratio: tuple[float, float] = _field(
        (0.55, 0.75), "unfit", "axis ratio of an oblique plane's oval (a transverse section: 0.85-1.0)")


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


ALL_UNFIT_KINDS = ("no_stomach", "no_vein", "renal_level", "too_high", "cord_insertion", "oblique",
                   "vein_at_skin")
# Training: echogenicity within 4 dB, maternal walls up to an obese patient's, each distractor
# in a share of cases near what sonographers meet, every kind of unfit plane.
TRAINING_ANATOMY = AnatomyRanges(
    echo_jitter_db=(0.0, 4.0), fat_mm=(3.0, 28.0), muscle_mm=(3.0, 15.0), placenta_mm=(15.0, 40.0),
    anterior_placenta_share=0.4, posterior_placenta_share=0.5, cord_loop_share=0.5, cord_loops_max=2,
    portal_vessel_share=0.5, gallbladder_share=0.3, kidney_share=0.2, limb_share=0.3,
    unfit_kinds=ALL_UNFIT_KINDS, oblique_ratio=(0.55, 0.75))
# Foreign: outside training where a range can be: echogenicity changed by more than any
# training case (4-7 dB), a maternal wall thicker than any training case (fat 30-45 mm),
# thicker placentas, more and more frequent distractors, more elongated oblique ovals.
FOREIGN_ANATOMY = AnatomyRanges(
    echo_jitter_db=(4.0, 7.0), fat_mm=(30.0, 45.0), muscle_mm=(3.0, 15.0), placenta_mm=(40.0, 50.0),
    anterior_placenta_share=0.5, posterior_placenta_share=0.5, cord_loop_share=0.9, cord_loops_max=4,
    portal_vessel_share=0.8, gallbladder_share=0.6, kidney_share=0.4, limb_share=0.7,
    unfit_kinds=ALL_UNFIT_KINDS, oblique_ratio=(0.45, 0.55))

NARROW = Appearance("narrow")
TRAINING = Appearance("training", anatomy=TRAINING_ANATOMY)
FOREIGN = Appearance("foreign", anatomy=FOREIGN_ANATOMY)
PRESETS = {a.name: a for a in (NARROW, TRAINING, FOREIGN)}
