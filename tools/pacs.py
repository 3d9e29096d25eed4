#!/usr/bin/env python3
"""Measure the ultrasound images of a study in a PACS and store the results back into it.

The server is reached over DICOMweb (its root URL: Orthanc's is http://HOST:8042/dicom-web):
the study's ultrasound images are found (QIDO-RS) and retrieved (WADO-RS) into OUT/exam;
single-frame images are measured as tools/infer.py measures them (OUT/scans), cine loops as
tools/sweep.py does (OUT/loops/NAME: the best frame); each gets a DICOM SR of its biometry
(TID 5000) and a DICOM SEG of its class map, stored back into the same study (STOW-RS).

Credentials never go on the command line: set FETAL_PACS_USER and FETAL_PACS_PASSWORD (basic
authentication) or FETAL_PACS_TOKEN (bearer token), or give --auth-file FILE, a JSON file only
you can read ({"user": ..., "password": ...} or {"token": ...}).

OUT/pacs.json is the outbox: what was written and whether the server stored it. A server that
is down, refuses or times out loses nothing: the results stay in OUT, and
  fetal-pacs --resend OUT --url URL
sends what is pending. Exit status 1 if anything was not measured or not stored.

example:
  export FETAL_PACS_USER=fetal FETAL_PACS_PASSWORD=...
  python tools/pacs.py runs/fetal_channels 1.2.840.113619.2.55.3.1234 \\
      --url http://pacs.example.org:8042/dicom-web --out runs/pacs
  python tools/pacs.py --resend runs/pacs --url http://pacs.example.org:8042/dicom-web
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fetal_biometry import atomic  # noqa: E402
from fetal_biometry.io import dicom  # noqa: E402
from fetal_biometry.nets import model as model_folder  # noqa: E402
from fetal_biometry.exchange import pacs, source  # noqa: E402

TOOL = "pacs"  # the output marker of its folders (fetal_biometry.atomic.mark)

if __package__:  # installed: fetal_biometry.tools
    from . import infer, sweep  # noqa: E402
else:  # run from the checkout
    from tools import infer, sweep  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", metavar="MODEL_DIR", help="model folder (holds model.json)")
    parser.add_argument("study", nargs="?", metavar="STUDY_UID", help="the study's Study Instance UID")
    parser.add_argument("--url", required=True, metavar="URL", help="the server's DICOMweb root URL")
    parser.add_argument("--out", type=pathlib.Path, metavar="DIR",
                        help="output folder (created; a folder of anything else is refused)")
    parser.add_argument("--resend", type=pathlib.Path, metavar="DIR",
                        help="send the results of an earlier run that the server did not store")
    parser.add_argument("--auth-file", type=pathlib.Path, metavar="FILE",
                        help="credentials (JSON, readable by you only) instead of the environment")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the server (default 30)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output folder")
    return parser


def _retrieve(server: pacs.Pacs, study: str, out: pathlib.Path) -> list[pathlib.Path]:
    """The study's ultrasound images, saved as OUT/exam/us001.dcm, ... (names without UIDs)."""
    instances = server.ultrasound_instances(study)
    if not instances:
        raise pacs.PacsError(f"{server.url}: no ultrasound images (modality US) in the study")
    names = [f"us{k:03d}.dcm" for k in range(1, len(instances) + 1)]
    with atomic.staged_dir(out / "exam") as folder, source.quiet():  # whole, or not at all
        for name, instance in zip(names, instances):
            server.retrieve(instance).save_as(folder / name, enforce_file_format=True)
    return [out / "exam" / name for name in names]


def _measure(args, files: list[pathlib.Path]) -> tuple[list[str], list[dict]]:
    """Measure single frames with infer, loops with sweep; the DICOM objects and a summary."""
    overwrite = ["--overwrite"] if args.overwrite else []
    singles = [f for f in files if dicom.read_header(f).frames == 1]
    loops = [f for f in files if f not in singles]
    objects, measured = [], []
    if singles:
        # --keep-names: the files were named here (us001.dcm, ...), not by whoever named the patient
        infer.main([args.model, *map(str, singles), "--out", str(args.out / "scans"), "--dicom-out",
                    "--keep-names", *overwrite])
        summary = json.loads((args.out / "scans" / infer.INDEX).read_text())
        objects += [f"scans/{p}" for p in summary.get("dicom", [])]  # the exam's SR
        for record in summary["scans"]:
            objects += [f"scans/{p}" for p in record.get("dicom", [])]
            measured.append({"scan": record["scan"], "ac_mm": record.get("ac_mm")})
        measured += [{"scan": pathlib.Path(f["scan"]).stem, "error": f["error"]} for f in summary["failed"]]
    for loop in loops:
        folder = args.out / "loops" / loop.stem
        if sweep.main([args.model, str(loop), "--out", str(folder), "--dicom-out", "--no-video",
                       "--keep-names", *overwrite]):
            measured.append({"scan": loop.stem, "error": "not measured (the error above)"})
            continue
        record = json.loads((folder / f"{loop.stem}.json").read_text())
        objects += [f"loops/{loop.stem}/{p}" for p in record["dicom"]]
        measured.append({"scan": loop.stem, "frame": record["best_frame"], "ac_mm": record["ac_mm"]})
    return objects, measured


def _send(server: pacs.Pacs, out: pathlib.Path) -> int:
    try:
        stored = pacs.send_outbox(server, out, lambda path: print(f"stored {path}"))
    except pacs.PacsError as err:
        pending = [p for p, s in pacs.outbox(out)["objects"].items() if s != "stored"]
        print(f"pacs: error: {err}\npacs: {len(pending)} result(s) kept in {out} for later; send them "
              f"with: fetal-pacs --resend {out} --url {server.url}", file=sys.stderr)
        return 1
    print(f"{len(stored)} result(s) stored in {server.url}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.resend is None and not (args.model and args.study and args.out):
            raise ValueError("give MODEL_DIR STUDY_UID --out DIR to measure a study, or --resend DIR")
        http, how = pacs.session(args.auth_file)
        server = pacs.Pacs(args.url, http, args.timeout)
        if args.resend is not None:
            pacs.outbox(args.resend)  # a fetal-pacs folder, before anything is sent
            print(f"resending to {server.url} ({how})")
            return _send(server, args.resend)
        model_folder.load(args.model)
        atomic.claim_output(args.out, TOOL, inputs=[args.model], overwrite=args.overwrite, option="--out")
        atomic.mark(args.out, TOOL)
        print(f"{server.url} ({how})")
        files = _retrieve(server, args.study, args.out)
        objects, measured = _measure(args, files)
        pacs.new_outbox(args.out, objects, measured)
    except (ValueError, OSError, pacs.PacsError) as err:
        print(f"pacs: error: {err}", file=sys.stderr)
        return 1
    failed = [m for m in measured if "error" in m]
    status = _send(server, args.out)
    if failed:
        print(f"pacs: {len(failed)} image(s) not measured (listed in {args.out / pacs.STATE})", file=sys.stderr)
    return 1 if failed else status


if __name__ == "__main__":
    sys.exit(main())
