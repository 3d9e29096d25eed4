#!/usr/bin/env python3
"""The best abdominal plane of a sweep or cine loop: every frame classified, the best measured.

MODEL_DIR is a model folder (made by tools/train.py). SEQUENCE is one of
  a .mha / .nrrd stack   frames along the third axis (as ACOUSLIC-AI's sweeps); the spacing
                         comes from its header
  a video (mp4, avi...)  read through OpenCV; give the spacing with --spacing MM
  a multi-frame DICOM    calibration from its ultrasound region (or PixelSpacing); a file with
                         several calibrated regions needs --region K
The sequence is streamed (never held decoded whole). The probe geometry, shared by every frame,
comes from --geometry FILE (a case JSON, a sweep's truth.json, a probe object) or is estimated
from the first frame; a fan below the confidence threshold is used only with
--accept-fan-below C. Without a fan, a model of encoding 'none' classifies the whole frames
(NAME.json's geometry_source says so); other encodings refuse the sequence.

A patch classifier classifies every frame densely and scores it by its landmarks (stomach
bubble, umbilical vein: their confidence); the best --candidates frames are measured (ellipse,
support, residual, landmarks inside the abdomen) and the best plane is chosen. A segmenter
scores frames by their segmentation (abdomen outline complete, axis ratio, stomach bubble and
umbilical vein inside it, no heart, lungs or kidneys where the model has those classes),
smoothed over neighbouring frames: a first pass segments every --stride-th frame, a second the
frames around the best; the best --candidates are measured from the segmented abdomen.

Outputs in DIR:
  NAME.json          best_frame (0-based, -1: no frame fit to measure), ac_mm, the plane
                     verdict and reasons, the per-frame scores, timing
  NAME_scores.png    the scores over the frames, the chosen frame marked
  NAME_overlay.mp4   the sequence with its class map, measured frames with their ellipse
  NAME_best.png      the chosen frame (or the best candidate): classes beside the measurement
  dicom/NAME_*.dcm   with --dicom-out, for a DICOM loop: the chosen frame (or the best candidate)
                     as an image of its own, the SEG of its class map over it, and the SR of the
                     AC (TID 5000; "measurement failure" with the reasons when no frame was fit)

example:
  python tools/sweep.py runs/fetal_channels data/sweeps/sweep00000/frames.mha \\
      --geometry data/sweeps/sweep00000/truth.json --out runs/sweep
  python tools/sweep.py runs/fetal_channels loop.dcm --out runs/sweep
  python tools/sweep.py runs/fetal_channels loop.dcm --dicom-out --out runs/sweep
  python tools/sweep.py runs/fetal_channels loop.mp4 --spacing 0.28 --out runs/sweep
"""
import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from fetal_biometry import atomic, caffe_env, cli, figures, paths  # noqa: E402
from fetal_biometry.geometry import fan, probe as geom  # noqa: E402
from fetal_biometry.inference import dense as inference  # noqa: E402
from fetal_biometry.io import dicom, limits, scans, sequences  # noqa: E402
from fetal_biometry.measure import sweeps  # noqa: E402
from fetal_biometry.nets import model as model_folder  # noqa: E402

TOOL = "sweep"  # the output marker of its folders (fetal_biometry.atomic.mark)
INDEX = "sweep.json"  # what the folder holds; a sequence named "sweep" is written as "sweep-2"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, epilog=limits.HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL_DIR", help="model folder (holds model.json)")
    parser.add_argument("sequence", metavar="SEQUENCE", help=".mha/.nrrd stack, video or DICOM cine loop")
    parser.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR",
                        help="output folder (created; a folder of anything else is refused)")
    parser.add_argument("--spacing", type=cli.spacing_mm, metavar="MM",
                        help="pixel spacing, mm per pixel (needed for videos; checked against a file's own)")
    parser.add_argument("--geometry", type=pathlib.Path, metavar="FILE",
                        help="probe geometry: case JSON, sweep truth.json or probe object "
                             "(default: estimated from the first frame)")
    parser.add_argument("--region", type=int, metavar="K", help="the K-th calibrated region of a DICOM")
    parser.add_argument("--accept-fan-below", type=cli.confidence, metavar="C",
                        help=f"use an estimated fan whose confidence is below the threshold "
                             f"({fan.MIN_CONFIDENCE:g}) but at least C (marked low-confidence)")
    parser.add_argument("--batch", type=cli.at_least_one, default=inference.BATCH, metavar="N",
                        help=f"frames per forward pass (default {inference.BATCH})")
    parser.add_argument("--candidates", type=cli.at_least_one, default=sweeps.CANDIDATES, metavar="K",
                        help=f"frames measured in full (default {sweeps.CANDIDATES})")
    parser.add_argument("--stride", type=cli.at_least_one, default=sweeps.STRIDE, metavar="S",
                        help=f"with a segmenter: its first pass segments every S-th frame, the second "
                             f"the frames around the best (default {sweeps.STRIDE}; 1: every frame)")
    parser.add_argument("--fps", type=float, metavar="F",
                        help="frame rate of the overlay video (default: the sequence's, else 10)")
    parser.add_argument("--no-video", action="store_true", help="skip the overlay video")
    parser.add_argument("--dicom-out", action="store_true",
                        help="also write the chosen frame, a DICOM SEG of its class map and a DICOM "
                             "SR of its AC (OUT/dicom; DICOM loops only)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier sweep output folder")
    parser.add_argument("--keep-names", action="store_true",
                        help="name a DICOM loop's outputs after the file and record its path "
                             "(default: after a hash of its SOP Instance UID, as a scanner's file "
                             "name may be the patient's)")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU, Caffe backend)")
    cli.add_inference_options(parser)
    return parser


def _geometry(args, sequence: sequences.Sequence, encoding: str) -> tuple[geom.Geometry | None, str]:
    estimate = fan.probe_of(sequence.first_rgb(), sequence.transducer, sequence.reference_pixel,
                            args.geometry, args.accept_fan_below)
    if args.geometry is not None:
        return estimate.geometry, estimate.source
    source = f"first frame: {estimate.source}"
    if estimate.geometry is None:
        if encoding != inference.NO_FAN_ENCODING:
            raise ValueError(f"{sequence.path}: {source}; the model's encoding {encoding!r} needs "
                             "beam directions: pass --geometry FILE, --accept-fan-below C, or use "
                             f"a model of encoding {inference.NO_FAN_ENCODING!r}")
        source += (f"; whole frames classified with encoding {inference.NO_FAN_ENCODING!r}, "
                   "which needs no beam directions")
    elif estimate.low_confidence:
        print(f"sweep: warning: {sequence.path}: {source}", file=sys.stderr)
    return estimate.geometry, source


def run(args) -> dict:
    """Analyse one sequence into args.out; returns the record written as NAME.json."""
    cli.inference_setup(args)  # before anything is written
    model = model_folder.load(args.model)
    sequence = sequences.open_sequence(args.sequence, args.spacing, args.region)
    if sequence.spacing_mm is None:
        raise ValueError(f"{sequence.path}: no pixel spacing in the file; pass --spacing MM")
    if args.dicom_out and sequence.kind != "dicom":
        raise ValueError(f"{sequence.path}: --dicom-out needs a DICOM loop (no study to report into)")
    if args.dicom_out:  # before any work: a file the objects cannot reference
        from fetal_biometry.exchange import source  # pydicom and highdicom: only with --dicom-out

        try:
            source.read_source(sequence.path)
        except source.SourceError as error:
            raise ValueError(f"{sequence.path}: {error}") from None
    probe, geometry_source = _geometry(args, sequence, model.encoding)
    for path in atomic.claim_output(args.out, TOOL, inputs=[args.model, args.sequence],
                                    overwrite=args.overwrite, option="--out"):
        print(f"sweep: removed {path}, left by an interrupted run", file=sys.stderr)
    if args.backend == "caffe":  # OpenCV needs no Caffe
        caffe_env.set_device(args.gpu)
    classifier = inference.SequenceClassifier(inference.engine(model, backend=args.backend), probe,
                                              sequence.shape, sequence.spacing_mm, args.batch)
    hidden = sequence.kind == "dicom" and not args.keep_names  # the file name may be the patient's
    name = (dicom.read_header(sequence.path).scan_name() if hidden
            else paths.safe_name(sequence.name, "sequence"))
    out = args.out
    if name == pathlib.Path(INDEX).stem:
        name += "-2"
    created = not out.exists()
    atomic.mark(out, TOOL)
    fps = args.fps or sequence.fps or 10.0
    draft = None if args.no_video else sequences.VideoWriter(out / f".{name}_draft.mp4", fps, sequence.shape)
    bar = tqdm(total=sequence.count, desc="frames", unit="frame")

    def on_frame(index, frame, labels, score):
        bar.update()
        if draft is not None:
            draft.write(figures.sweep_frame(frame, labels, index, None if score is None else score["score"]))

    start = time.perf_counter()
    try:
        result = sweeps.analyse_sequence(classifier, sequence.frames, sequence.spacing_mm, sequence.count,
                                         on_frame, args.candidates, args.stride)
    except BaseException:
        if draft is not None:
            draft.close(keep=False)
        if created and [p.name for p in out.iterdir()] == [atomic.OUTPUT_MARKER]:
            (out / atomic.OUTPUT_MARKER).unlink()
            out.rmdir()  # a failed run leaves no folder it made
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    frames = len(result.record["frames"])
    record = {"sequence": name if hidden else str(sequence.path), "kind": sequence.kind, "frame_count": frames,
              "shape": list(sequence.shape), "spacing_mm": sequence.spacing_mm,
              "spacing_source": sequence.spacing_source, "geometry_source": geometry_source,
              "geometry": None if probe is None else geom.to_dict(probe),
              "model": str(model.root), "encoding": model.encoding,
              "warnings": list(sequence.warnings),
              "timing": {"seconds": round(seconds, 2), "frames_per_second": round(frames / seconds, 2)},
              **result.record}
    shown = result.chosen or result.best
    if args.dicom_out:
        from fetal_biometry.exchange import scan as dicom_out
        from fetal_biometry.exchange.algorithm import Algorithm

        objects = dicom_out.scan_objects(sequence.path, shown.index, sequence.region, shown.labels,
                                         record, model.classes, Algorithm.from_model(model))
        record["dicom"] = dicom_out.write_objects(out, name, objects)
    picture = np.hstack([figures.class_overlay(shown.frame, shown.labels),
                         figures.draw_measurement(shown.frame, shown.measured)])
    atomic.write_bytes(out / f"{name}_best.png", scans.encode_png(picture))
    atomic.write_bytes(out / f"{name}_scores.png",
                       figures.figure_png(figures.sweep_scores(record, f"{name} ({model.name})")))
    if draft is not None:
        draft.close()
        figures.annotate_video(draft.path, out / f"{name}_overlay.mp4", result, fps)
    atomic.write_text(out / f"{name}.json", json.dumps(record, indent=1) + "\n")
    atomic.write_text(out / INDEX, json.dumps({"model": str(model.root), "sequences": [name]}) + "\n")
    return record


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        record = run(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(paths.printable(f"sweep: error: {err}"), file=sys.stderr)
        return 1
    shown = paths.printable(record["sequence"])
    if record["best_frame"] < 0:
        print(f"{shown}: no frame fit to measure; the best candidate (frame "
              f"{record['best_candidate']}): {'; '.join(record['reasons'][1:])}")
    else:
        verdict = ("plane acceptable" if record["plane_acceptable"]
                   else f"plane not accepted: {'; '.join(record['reasons'])}")
        print(f"{shown}: frame {record['best_frame']} of {record['frame_count']}, "
              f"AC {record['ac_mm']:.1f} mm, {verdict} "
              f"({record['timing']['frames_per_second']:.1f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
