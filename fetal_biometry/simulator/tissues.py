"""The tissues of the simulated scans: acoustic properties and the dataset class of each.

A tissue id is an index into :data:`TISSUES`; the arrays below are the same table as columns,
for indexing whole tissue maps at once. New tissues go at the end, so that ids stay put.

Look-alikes outside the fetal abdomen (free umbilical cord loops, limbs) belong to the
background class: the classifier's vein is the *intrahepatic* umbilical vein, and its
abdomen is the abdomen being measured. A limb bone still shadows (:attr:`Tissue.bone`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from fetal_biometry.labels import (ABDOMEN, BACKGROUND, BRAIN, CAVUM, CEREBELLUM, FEMUR, FLUID, HEART,
                                   KIDNEY, LUNG, MIDLINE, RIB, SKULL, SPINE, STOMACH, THALAMUS, VEIN)


@dataclasses.dataclass(frozen=True)
class Tissue:
    """Acoustic properties of one tissue and the dataset class it belongs to."""

    name: str
    label: int
    echo: float  # scattering amplitude relative to liver
    density: float  # probability that a beam-grid sample holds a scatterer; 1: fully developed speckle
    attenuation: float  # dB / cm / MHz, one way
    impedance: float  # MRayl
    bone: bool = False  # absorbs like bone: casts an acoustic shadow, is never itself shadow
    reverberant: bool = False  # its echoes repeat just behind it (multiples between its tables)


TISSUES = (
    Tissue("maternal_skin", BACKGROUND, 1.3, 1.0, 0.6, 1.66),
    Tissue("fat", BACKGROUND, 0.3, 1.0, 0.5, 1.38),
    Tissue("fascia", BACKGROUND, 2.5, 1.0, 0.7, 1.70),
    Tissue("muscle", BACKGROUND, 0.8, 1.0, 0.9, 1.65),
    Tissue("myometrium", BACKGROUND, 0.6, 1.0, 0.7, 1.64),
    Tissue("placenta", BACKGROUND, 1.1, 1.0, 0.6, 1.62),
    Tissue("maternal_viscera", BACKGROUND, 0.6, 1.0, 0.7, 1.63),
    Tissue("amniotic_fluid", FLUID, 0.012, 0.0006, 0.005, 1.52),  # sparse floating particles
    # Fetal soft tissue holds more water than adult tissue: it attenuates less.
    Tissue("body_wall", ABDOMEN, 1.3, 1.0, 0.35, 1.68),
    Tissue("liver", ABDOMEN, 1.0, 1.0, 0.35, 1.64),
    # The renal level and the thorax have classes of their own (labels.SWEEP_CLASSES): a sweep
    # passes them, and they are what its frame choice must tell from the AC plane.
    Tissue("kidney", KIDNEY, 0.35, 1.0, 0.35, 1.62),
    Tissue("renal_sinus", KIDNEY, 2.0, 1.0, 0.35, 1.66),
    Tissue("vessel", ABDOMEN, 0.03, 0.003, 0.15, 1.60),  # aorta, hepatic veins
    Tissue("stomach", STOMACH, 0.03, 0.003, 0.005, 1.52),
    Tissue("umbilical_vein", VEIN, 0.03, 0.003, 0.15, 1.60),
    # Bone: 20 dB/cm/MHz lumps absorption and the reflection losses at its surfaces.
    Tissue("spine", SPINE, 15.0, 1.0, 20.0, 5.0, bone=True),
    Tissue("rib", RIB, 15.0, 1.0, 20.0, 5.0, bone=True),
    # Thorax, for sweeps (fetal_biometry.simulator.sweeps): fluid-filled fetal lungs are
    # brighter than liver; the heart is muscle around blood (chambers are "vessel").
    Tissue("lung", LUNG, 1.5, 1.0, 0.4, 1.65),
    Tissue("heart", HEART, 0.9, 1.0, 0.35, 1.66),
    # Distractors (fetal_biometry.simulator.anatomy): look-alikes of the landmarks.
    Tissue("gallbladder", ABDOMEN, 0.03, 0.003, 0.005, 1.52),  # bile: anechoic, a stomach look-alike
    Tissue("cord_jelly", BACKGROUND, 0.5, 1.0, 0.3, 1.58),  # Wharton's jelly of a free cord loop
    Tissue("cord_vessel", BACKGROUND, 0.03, 0.003, 0.15, 1.60),  # its vein and two arteries
    Tissue("limb", BACKGROUND, 0.9, 1.0, 0.35, 1.65),  # an arm or leg cut across or along
    Tissue("limb_bone", BACKGROUND, 15.0, 1.0, 20.0, 5.0, bone=True),  # humerus, femur: shadows
    # Head and femur planes (fetal_biometry.simulator.planes). The fetal skull is thin and
    # not yet dense: it dims what lies behind it where the beam meets it head-on and shadows
    # where the beam runs along it (the sides of the head); it reverberates (:attr:`reverberant`).
    Tissue("scalp", BACKGROUND, 1.1, 1.0, 0.35, 1.66),
    Tissue("skull", SKULL, 15.0, 1.0, 3.0, 4.0, bone=True, reverberant=True),
    Tissue("brain", BRAIN, 0.3, 1.0, 0.3, 1.58),  # hypoechoic fetal brain
    Tissue("cavum", CAVUM, 0.03, 0.003, 0.005, 1.52),  # cavum septi pellucidi: a fluid box
    Tissue("thalamus", THALAMUS, 0.8, 1.0, 0.3, 1.60),
    Tissue("falx", MIDLINE, 2.5, 1.0, 0.5, 1.75),  # the midline echo
    Tissue("cerebellum", CEREBELLUM, 0.8, 1.0, 0.3, 1.60),  # transcerebellar planes only
    Tissue("cisterna_magna", BRAIN, 0.03, 0.003, 0.005, 1.52),
    Tissue("femur", FEMUR, 15.0, 1.0, 20.0, 5.0, bone=True),  # the ossified diaphysis
    Tissue("cartilage", BACKGROUND, 0.12, 1.0, 0.3, 1.60),  # its unossified ends: hypoechoic
)
#: How many tissues the abdomen simulator had before the head and femur planes: the random
#: draws of an abdomen case only ever involve these, so its scans stay byte for byte the same.
ABDOMEN_TISSUES = TISSUES.index(next(t for t in TISSUES if t.name == "scalp"))
TISSUE = {t.name: i for i, t in enumerate(TISSUES)}  # name -> tissue id
LABEL = np.array([t.label for t in TISSUES], np.uint8)
ECHO = np.array([t.echo for t in TISSUES], np.float32)
DENSITY = np.array([t.density for t in TISSUES], np.float32)
ATTENUATION = np.array([t.attenuation for t in TISSUES], np.float32)
IMPEDANCE = np.array([t.impedance for t in TISSUES], np.float32)
BONE = np.array([t.bone for t in TISSUES], bool)
REVERBERANT = np.array([t.reverberant for t in TISSUES], bool)
