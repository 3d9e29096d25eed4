#!/usr/bin/env python3
"""Simulate a dataset of B-mode scans of fetal planes (abdomen, head, femur), with ground truth.

Writes OUT in the dataset format of fetal_biometry.io.dataset (dataset.json, images/, labels/,
cases/): the folder appears only once every case is written and the dataset validates.
The same --seed and options give the same dataset, byte for byte; case i does not depend on
--cases.

--plane chooses what the scans show: abdomen (the default: the AC plane, or an unfit one),
head (the transthalamic plane where HC and BPD are measured; unfit: transcerebellar or
oblique), femur (the femur along its length; unfit: foreshortened) or mixed (a third of
each). Head and femur cases carry the classes skull, brain, midline and femur and their exact
HC, OFD, BPD (outer-to-outer, outer-to-inner) or FL in cases/<case>.json
(fetal_biometry.simulator.planes).

--layout hc18 writes the heads (--plane head) in HC18's layout instead of the dataset format:
training_set/NNN_HC.png beside NNN_HC_Annotation.png (the skull's ellipse as a ring),
training_set_pixel_size_and_HC.csv and geometry/NNN_HC.json (fetal_biometry.simulator.hc18),
to test tools/import_dataset.py --format hc18 where HC18 itself is not reachable.

--appearance chooses the ranges each scan's physics and anatomy are drawn from
(fetal_biometry.simulator.appearance; recorded in dataset.json): training (the default:
several scanners, presets and operators: frequency, pulse length, beam width, scatterer
density, dynamic range, gain, TGC errors, noise, reverberation, near-field clutter,
side-lobe haze), narrow (the first round's simulator, one scanner setting) or foreign
(every range outside training: a check set the nets never trained on). Sweeps keep
the first round's physics.

With --sweeps N it writes N simulated sweeps instead: cine loops of --frames frames through
one fetus each, caudo-cranial (kidneys low; stomach bubble and umbilical vein at the portal
sinus; heart and lungs high), the probe tilting and shifting a little, with per-frame truth
(optimal / suboptimal / irrelevant plane, AC, abdomen mask) in this layout
(fetal_biometry.simulator.sweeps):
  OUT/sweeps.json              index: format, sweep names, generator
  OUT/NAME/frames.mha          the loop, (frames, H, W) uint8, spacing in the header
  OUT/NAME/masks.mha           abdomen masks: 1 on optimal frames, 2 on suboptimal, 0 elsewhere
  OUT/NAME/labels.mha          dataset classes per frame
  OUT/NAME/truth.json          probe geometry, spacing, reference AC, per-frame truth

examples:
  python tools/simulate.py --cases 100 --out data/fetal/sim --seed 0 --contact-sheet sheet.png
  python tools/simulate.py --cases 60 --plane mixed --out data/fetal/mixed --contact-sheet mixed.png
  python tools/simulate.py --sweeps 6 --frames 140 --out data/fetal/sweeps --seed 3
"""
import argparse
import functools
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from fetal_biometry import atomic, figures, simulator  # noqa: E402
from fetal_biometry.io import dataset  # noqa: E402
from fetal_biometry.simulator import hc18, sweeps as sweep_simulator  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--cases", type=int, metavar="N", help="number of scans to simulate")
    what.add_argument("--sweeps", type=int, metavar="N", help="number of sweeps (cine loops) to simulate")
    parser.add_argument("--frames", type=int, default=sweep_simulator.FRAMES, metavar="F",
                        help=f"frames per sweep (default {sweep_simulator.FRAMES}; ACOUSLIC-AI's have 140)")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR",
                        help="dataset folder to create")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed, a non-negative integer (default 0)")
    parser.add_argument("--probe", choices=simulator.PROBES, default="convex",
                        help="probe type: convex (curvilinear fan, the default), linear "
                             "(parallel beams, sometimes steered) or mixed (2/3 convex)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="image height and width in pixels (default 256 256; at least 64)")
    parser.add_argument("--unacceptable-share", type=float, default=0.3, metavar="P",
                        help="probability that a plane is unfit for its measurement: for AC "
                             "stomach or umbilical vein missing, wrong level, oblique...; for a "
                             "head transcerebellar or oblique; a foreshortened femur (default 0.3)")
    parser.add_argument("--plane", choices=simulator.PLANE_KINDS, default="abdomen",
                        help="what the scans show: abdomen (default), head (transthalamic), femur "
                             "or mixed (a third of each); unfit planes of each kind by "
                             "--unacceptable-share")
    parser.add_argument("--layout", choices=("dataset", "hc18"), default="dataset",
                        help="dataset (the project's format, default) or hc18 (HC18's layout; "
                             "with --plane head)")
    parser.add_argument("--appearance", choices=tuple(simulator.PRESETS),
                        help="ranges the scans' appearance is drawn from: training (the default for "
                             "scans; widened: several scanners, presets, operators), narrow (the first "
                             "round's ranges) or foreign (outside training: a check set); sweeps "
                             "without it keep the first round's single setting")
    parser.add_argument("--contact-sheet", type=pathlib.Path, metavar="PNG",
                        help="also draw the first scans beside their label overlays into PNG")
    parser.add_argument("--sheet-cases", type=int, default=8, metavar="K",
                        help="scans on the contact sheet (default 8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it exists (otherwise that is an error)")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    count = args.cases if args.cases is not None else args.sweeps
    if count < 1 or args.seed < 0 or min(args.size) < 64 or args.sheet_cases < 1:
        parser.error("--cases, --sweeps and --sheet-cases must be >= 1, --seed >= 0 and --size >= 64 64")
    if args.frames < 2:
        parser.error("--frames must be >= 2")
    if not 0 <= args.unacceptable_share <= 1:
        parser.error("--unacceptable-share must lie in [0, 1]")
    try:  # a folder (or sheet) of the user's, or one another tool wrote, is never replaced
        for path in atomic.claim_output(args.out, simulator.TOOL, overwrite=args.overwrite, option="--out"):
            print(f"simulate: removed {path}, left by an interrupted run", file=sys.stderr)
        if args.contact_sheet:
            atomic.claim_file(args.contact_sheet, simulator.TOOL, [args.out], "--contact-sheet")
    except atomic.OutputError as error:
        print(f"simulate: error: {error}", file=sys.stderr)
        return 1
    if args.layout == "hc18" and (args.plane != "head" or args.sweeps or args.contact_sheet):
        parser.error("--layout hc18 writes heads: give --plane head (no --sweeps, no --contact-sheet)")
    if args.sweeps and args.plane != "abdomen":
        parser.error("--sweeps simulates abdomen sweeps only; leave out --plane")
    if args.sweeps:
        # Without --appearance, sweeps keep the first round's single setting (their format's default).
        appearance = None if args.appearance is None else simulator.PRESETS[args.appearance]
        sweep_simulator.write(args.out, args.sweeps, args.seed, args.frames, tuple(args.size), args.probe,
                              functools.partial(tqdm, total=args.sweeps, desc="simulating", unit="sweep"),
                              appearance)
        print(f"wrote {args.sweeps} sweeps of {args.frames} frames to {args.out}")
        return 0
    progress = functools.partial(tqdm, total=args.cases, desc="simulating", unit="scan")
    appearance = simulator.PRESETS[args.appearance or "training"]
    try:
        if args.layout == "hc18":
            hc18.write(args.out, progress(simulator.simulate(args.cases, args.seed, tuple(args.size), args.probe,
                                                             args.unacceptable_share, appearance, "head")))
            print(f"wrote {args.cases} heads in HC18's layout to {args.out}")
            return 0
        simulator.write(args.out, args.cases, args.seed, tuple(args.size), args.probe,
                        args.unacceptable_share, progress, appearance, args.plane)
        if args.contact_sheet:
            atomic.write_bytes(args.contact_sheet,
                               atomic.signed_png(figures.dataset_sheet(args.out, args.sheet_cases), simulator.TOOL))
    except (dataset.DatasetError, OSError) as error:
        print(f"simulate: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.cases} cases to {args.out}"
          + (f", contact sheet {args.contact_sheet}" if args.contact_sheet else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
