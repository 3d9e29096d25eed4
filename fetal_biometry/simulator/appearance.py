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
    """Ranges of the imaging physics, drawn once per case by :func:`.physics.draw_settings`.

    Each field is a ``(low, high)`` range drawn uniformly (``low == high``: that value); the
    defaults are the first round's constants (:data:`NARROW`). Groups: ``psf`` (transducer
    and beam), ``speckle`` (scatterer statistics), ``receiver`` (gain, TGC, noise, display)
    and ``artefacts`` (reverberation, near-field clutter, side-lobe haze).
    """

    # Abdominal curved arrays transmit at 2-5 MHz and offer penetration / general / resolution
    # presets about +-25 % around the nominal frequency (harmonic modes shift it further).
    frequency_factor: tuple = _field((1.0, 1.0), "psf", (
        "centre frequency as a multiple of the scene's (which falls with depth, ~4.7-2.6 MHz): "
        "wavelength (PSF) and attenuation follow"))
    # Two-way pulse-echo envelope: 1.5-4 cycles for 60-80 % fractional bandwidth; depth FWHM
    # is half the pulse length, so sigma = FWHM / 2.355 of about 0.3-0.85 wavelengths.
    pulse_wavelengths: tuple = _field((0.45, 0.45), "psf", (
        "axial PSF sigma in wavelengths (Gaussian pulse envelope; 0.45: FWHM ~1 wavelength, two cycles)"))
    # A 256 px scan is the scanner's ~800-1000 px image resampled: its speckle grain spans
    # 0.6-1.2 px along the beam, depending on the scanner's processing and the zoom.
    axial_floor_px: tuple = _field((0.75, 0.75), "psf", (
        "least axial PSF sigma in display pixels (the display's band limit: speckle grain size)"))
    # Lateral FWHM ~ wavelength x F-number; focused arrays run at F/1.5-F/3 near the focus.
    face_width_wavelengths: tuple = _field((2.0, 2.0), "psf", (
        "lateral beam FWHM at the probe face, in wavelengths (the F-number near the face)"))
    # Active apertures of abdominal arrays: 64-128 elements at 0.3-0.5 mm, i.e. about 20-40 mm.
    aperture_mm: tuple = _field((25.0, 25.0), "psf", (
        "active aperture (mm): beyond the face the beam widens by wavelength x depth / aperture"))
    # Soft tissue holds far more scatterers than a resolution cell resolves (fully developed,
    # Rayleigh speckle) except in sparse media; a cell spans about 10-40 beam-grid samples,
    # so density 0.1 leaves 1-4 scatterers per cell: grainy, not fully developed speckle.
    scatterer_density: tuple = _field((1.0, 1.0), "speckle", (
        "share of beam-grid samples of soft tissue holding a scatterer (drawn log-uniformly; "
        "1: fully developed speckle, < 0.3: not fully developed); fluid, vessels and bone keep theirs"))
    density_spread: tuple = _field((0.0, 0.0), "speckle", (
        "log-normal spread of the density between soft tissues of one case (scatterers per "
        "resolution cell differ from tissue to tissue)"))
    # Abdominal/obstetric presets display 50-70 dB; operators choose 40-80 dB.
    dynamic_range_db: tuple = _field((50.0, 60.0), "receiver", (
        "displayed dynamic range (dB) of the log compression"))
    # Overall gain: liver speckle sits mid-gray at 24-30 dB below white; operators set the
    # gain knob some +-6 dB around that.
    white_level_db: tuple = _field((24.0, 30.0), "receiver", (
        "echo level (dB, liver RMS = 0 dB) shown white: the overall gain, higher is darker"))
    # Eight TGC sliders, each a few dB off where the fetus would look even (operators'
    # slider habits, a gain curve left from the previous patient).
    tgc_error_db: tuple = _field((0.0, 0.0), "receiver", (
        "standard deviation (dB) of the TGC error at each of 8 slider depths (a smooth random "
        "depth curve added to the TGC)"))
    # Receiver noise shows at depth: a scan's deepest row sits 15-35 dB above the noise floor.
    noise_db: tuple = _field((25.0, 25.0), "receiver", (
        "electronic noise below liver echoes at the deepest row, after TGC (dB; lower: noisier)"))
    # Multiples between the probe face and the skin, fat and fascia interfaces: a few tenths
    # of the interface echo per bounce, worst through thick fat.
    reverberation: tuple = _field((0.0, 0.0), "artefacts", (
        "amplitude of each further multiple of the interfaces in the first 25 mm, relative to "
        "the one before (the k-th multiple appears at k times their depth)"))
    # Near-field haze: clutter up to about liver level right under the probe, fading over
    # the first 1-2 cm.
    clutter: tuple = _field((0.0, 0.0), "artefacts", (
        "near-field clutter amplitude at the face, relative to liver speckle"))
    clutter_depth_mm: tuple = _field((10.0, 10.0), "artefacts", (
        "depth (mm) over which the near-field clutter falls by 1/e"))
    # Side lobes and aberration through the abdominal wall fill fluid with echoes 20-40 dB
    # below the tissue around it: amniotic fluid and the stomach are dark gray, not black.
    side_lobe: tuple = _field((0.0, 0.0), "artefacts", (
        "side-lobe haze amplitude relative to the echoes around it (nearby beams and the whole "
        "row at that depth): fills anechoic fluid"))


TRAINING_PHYSICS = PhysicsRanges(
    frequency_factor=(0.8, 1.25), pulse_wavelengths=(0.35, 0.9), axial_floor_px=(0.6, 1.1),
    face_width_wavelengths=(1.5, 3.0), aperture_mm=(18.0, 35.0),
    scatterer_density=(0.1, 1.0), density_spread=(0.0, 0.5),
    dynamic_range_db=(40.0, 75.0), white_level_db=(18.0, 36.0), tgc_error_db=(0.0, 5.0),
    noise_db=(15.0, 35.0),
    reverberation=(0.0, 0.35), clutter=(0.0, 0.5), clutter_depth_mm=(5.0, 15.0), side_lobe=(0.0, 0.1))
"""What training scans cover: several scanners, presets, operators and patients."""

FOREIGN_PHYSICS = PhysicsRanges(
    frequency_factor=(0.62, 0.76), pulse_wavelengths=(0.95, 1.2), axial_floor_px=(1.15, 1.4),
    face_width_wavelengths=(3.2, 4.0), aperture_mm=(13.0, 17.0),
    scatterer_density=(0.04, 0.09), density_spread=(0.55, 0.8),
    dynamic_range_db=(30.0, 37.0), white_level_db=(12.0, 16.5), tgc_error_db=(5.5, 7.0),
    noise_db=(11.0, 14.0),
    reverberation=(0.38, 0.5), clutter=(0.55, 0.75), clutter_depth_mm=(15.5, 20.0), side_lobe=(0.11, 0.15))
"""Every physics range just *outside* :data:`TRAINING_PHYSICS` (lower frequency, longer
pulse, wider beam, sparser scatterers, a harsh narrow-range display turned brighter, larger TGC
errors, more noise, stronger artefacts): a check set the nets never trained on."""

PHYSICS_BOUNDS = {
    "frequency_factor": (0.4, 2.0), "pulse_wavelengths": (0.25, 2.0), "axial_floor_px": (0.5, 2.0),
    "face_width_wavelengths": (1.0, 6.0), "aperture_mm": (8.0, 60.0),
    "scatterer_density": (0.005, 1.0), "density_spread": (0.0, 1.5),
    "dynamic_range_db": (20.0, 100.0), "white_level_db": (5.0, 50.0), "tgc_error_db": (0.0, 15.0),
    "noise_db": (0.0, 50.0),
    "reverberation": (0.0, 0.8), "clutter": (0.0, 1.5), "clutter_depth_mm": (2.0, 40.0),
    "side_lobe": (0.0, 0.3)}
"""The plausible limits of each physics range (what :func:`.physics.draw_settings` accepts)."""


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
        0.0, "distractors", "cases with the upper poles of the kidneys partly in plane (labelled kidney)")
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

    def groups(self, half: str | None = None) -> tuple[str, ...]:
        """The randomisation groups, in field order: all, or those of ``half`` ('physics' or
        'anatomy')."""
        if half not in (None, "physics", "anatomy"):
            raise ValueError(f"unknown half {half!r}: 'physics' or 'anatomy'")
        seen = []
        for part in (self.physics, self.anatomy) if half is None else (getattr(self, half),):
            for f in dataclasses.fields(part):
                if f.metadata["group"] not in seen:
                    seen.append(f.metadata["group"])
        return tuple(seen)

    def without(self, *groups: str) -> "Appearance":
        """This appearance with the ranges of ``groups`` back at their :data:`NARROW` values."""
        unknown = [g for g in groups if g not in self.groups()]
        if unknown or not groups:
            raise ValueError(f"unknown randomisation group(s) {unknown}; choose from {self.groups()}")
        parts = {}
        for key, narrow in (("physics", NARROW.physics), ("anatomy", NARROW.anatomy)):
            part = getattr(self, key)
            parts[key] = dataclasses.replace(part, **{
                f.name: getattr(narrow, f.name) for f in dataclasses.fields(part)
                if f.metadata["group"] in groups})
        return dataclasses.replace(self, name=f"{self.name} without {', '.join(groups)}", **parts)

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
TRAINING = Appearance("training", physics=TRAINING_PHYSICS, anatomy=TRAINING_ANATOMY)
FOREIGN = Appearance("foreign", physics=FOREIGN_PHYSICS, anatomy=FOREIGN_ANATOMY)
PRESETS = {a.name: a for a in (NARROW, TRAINING, FOREIGN)}
