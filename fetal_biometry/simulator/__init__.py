"""B-mode ultrasound simulator of fetal abdominal cross-sections, with exact ground truth.

Head (transthalamic) and femur planes are drawn beside the abdomen by
:mod:`~fetal_biometry.simulator.planes`, sharing everything but the fetus (``plane=`` of
:func:`simulate_case`: abdomen, head, femur or mixed).

One case is made in three steps.

1. **Anatomy** (:func:`draw_scene`). Gestational age 20-40 weeks gives the abdominal
   circumference (Hadlock et al. 1984 mean, 5 % spread, kept within 150-380 mm), which gives a
   nearly round ellipse: the skin line. Inside it, in a fetal frame (``u`` towards the fetal
   left, ``v`` anterior, mm): abdominal wall, liver, stomach bubble (left), the curved
   intrahepatic umbilical vein (a "J" towards the right), aorta, the vertebra's three
   ossification centres (posterior) and ribs (lateral). Around it: amniotic fluid, then the
   layers parallel to the probe face, undulating across the fan: maternal skin, fat, fascia,
   muscle, uterine wall and, in some cases, the placenta; beyond the fetus the posterior
   uterine wall and maternal viscera. The fetus is rotated, mirrored, and placed at random
   depth and beam angle, always inside the fan. A share of planes (default 30 %) is not
   acceptable for AC: stomach missing, umbilical vein missing, the wrong (renal) level, and
   with the training ranges also too high (heart and lungs), too low (the cord insertion),
   oblique (an elongated oval) or the umbilical vein running out to the skin line. Look-alikes
   of the landmarks (free cord loops, portal vessels, gallbladder, kidneys, limbs) and varied
   echogenicity and maternal layers come with the ranges
   (:class:`~fetal_biometry.simulator.appearance.AnatomyRanges`).
   The imaging depth is set as a sonographer would, to fit the fetus, so the pixel spacing
   follows the size and the maternal wall (training ranges: 0.48-0.99 mm per pixel for
   256 x 256 images, 1st-99th percentile, median 0.73; the first round's: 0.45-0.92, median
   0.68) and the transmit frequency falls with depth (about 4.4 to 2.5 MHz).
2. **Physics** (:func:`beam_envelope`), on a beam grid (depth x beam, two samples per pixel
   along depth, about one pixel between beams at the deepest row). Each sample holds a
   scatterer with the tissue's density as probability and complex Gaussian amplitude scaled
   by its echogenicity (times a smooth random texture); interfaces add a coherent specular
   echo that is strongest where the beam meets them head-on; echoes are attenuated by the
   two-way loss accumulated along the beam (bone: strong, fluid: almost none); receiver
   noise is added, and everything is convolved with the pulse point-spread function
   (Gaussian axial pulse, lateral beam width growing with depth). The envelope is the
   magnitude of this complex (IQ) field, times a time-gain compensation (a smooth depth
   curve through the soft-tissue loss of the more attenuating beams). Speckle of homogeneous
   tissue is a linear filter of complex Gaussian scatterers, hence Rayleigh (mean/std 1.91).
3. **Display and truth**: log compression to 8-bit gray in beam coordinates, then scan
   conversion into the fan. Labels come from the same anatomy, evaluated on the pixel grid;
   *shadow* marks the pixels whose two-way intensity transmission through bone, seen through
   the beam's lateral width, has fallen below a tenth (-10 dB) (:func:`shadow_mask`).

Every case draws its random numbers from ``numpy.random.default_rng([seed, index])``: a
dataset is byte-for-byte reproducible, and case ``i`` does not depend on how many are made.

The package: :mod:`~fetal_biometry.simulator.tissues` (the tissue table),
:mod:`~fetal_biometry.simulator.anatomy` (scene drawing), :mod:`~fetal_biometry.simulator.layout`
(maternal layers, probe and placement), :mod:`~fetal_biometry.simulator.physics`
(beam-grid physics), :mod:`~fetal_biometry.simulator.appearance` (the randomised ranges:
presets NARROW, TRAINING, FOREIGN) and :mod:`~fetal_biometry.simulator.cases` (whole cases and
datasets).
"""
from fetal_biometry._exports import lazy

__getattr__, __dir__, __all__ = lazy(__name__, {
    "tissues": ("Tissue", "TISSUES", "TISSUE", "LABEL", "ECHO", "DENSITY", "ATTENUATION",
                "IMPEDANCE", "BONE", "REVERBERANT", "ABDOMEN_TISSUES"),
    "anatomy": ("PROBES", "CONVEX_SHARE_MIXED", "AC_RANGE_MM", "AC_SPREAD",
                "ACCEPTABLE", "NO_STOMACH", "NO_VEIN", "RENAL_LEVEL", "TOO_HIGH",
                "CORD_INSERTION", "OBLIQUE", "VEIN_AT_SKIN", "UNFIT", "UNACCEPTABLE",
                "JITTERED", "EVERY_JITTERED", "Blob", "Tube", "Band", "Scene", "hadlock_ac_mm",
                "thorax", "draw_organs", "draw_inner_distractors", "draw_fluid_distractors",
                "draw_echo_scale", "draw_scene", "layer_tissue", "paint_fetus",
                "normalised_lateral", "tissue_at", "abdomen_ellipse"),
    "layout": ("MIN_LAYER_MM", "Boundary", "fits", "probe_and_layers"),
    "physics": ("SOUND_SPEED", "SAMPLES_PER_PIXEL", "BEAM_PITCH_PX", "MIN_SIGMA_SAMPLES",
                "SPECULAR_GAIN", "SPECULAR_POWER", "TGC_PERCENTILE", "TEXTURE_SIGMA",
                "TEXTURE_CELL", "SHADOW_LEVEL", "TGC_SLIDERS", "REVERB_SOURCE_MM",
                "REVERB_ORDERS", "SIDE_LOBE_WIDTH", "BONE_REVERB_MM", "BONE_REVERB_RATIO",
                "BONE_REVERB_ORDERS", "SOFT", "Settings", "check_ranges",
                "draw_settings", "FIRST_ROUND", "shadow_mask", "beam_envelope", "log_compress",
                "texture", "draw_display"),
    "appearance": ("PhysicsRanges", "TRAINING_PHYSICS", "FOREIGN_PHYSICS", "PHYSICS_BOUNDS",
                   "AnatomyRanges", "Appearance", "ALL_UNFIT_KINDS", "TRAINING_ANATOMY",
                   "FOREIGN_ANATOMY", "NARROW", "TRAINING", "FOREIGN", "PRESETS"),
    "cases": ("TOOL", "VISIBLE_SHARE", "MAX_ATTEMPTS", "GENERATOR", "PHYSICS_STREAM", "PLANE_STREAM",
              "PLANE_KINDS", "BeamGrid", "beam_grid", "ground_truth", "hidden_reason",
              "scan_image", "plane_kind", "simulate_plane", "simulate_case", "simulate", "write",
              "generator_record"),
    "planes": ("AGE_WEEKS", "MAX_Z", "HEAD_ACCEPTABLE", "TRANSCEREBELLAR", "OBLIQUE_HEAD",
               "FEMUR_ACCEPTABLE", "FORESHORTENED", "HEAD_UNFIT", "FEMUR_UNFIT", "Skull", "Outside",
               "Bar", "PlaneTruth", "draw_head", "head_truth", "draw_femur"),
    "sweeps": ("FORMAT", "VERSION", "INDEX", "PLANES", "OPTIMAL", "SUBOPTIMAL", "IRRELEVANT",
               "MAX_OPTIMAL_TILT_DEG", "MAX_TILT_DEG", "SWEEP_RANGE", "DIAPHRAGM", "PELVIS",
               "VEIN_HALF_MM", "FRAMES", "HOLD", "Anatomy", "organs_at", "Sweep",
               "simulate_sweep", "simulate_sweeps", "write_stack", "truth_record",
               "write_sweeps", "is_sweeps", "open_sweeps", "read_truth"),
})
