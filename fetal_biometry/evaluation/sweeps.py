"""Simulated sweeps (:mod:`fetal_biometry.simulator.sweeps`) analysed with a model and scored with
the benchmark's metrics (:mod:`fetal_biometry.evaluation.metrics`): per sweep, summary, table."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Callable

import numpy as np

from fetal_biometry.evaluation.metrics import combined, dice, nae, wfss
from fetal_biometry.geometry import probe as geom
from fetal_biometry.inference.dense import BATCH, SequenceClassifier, engine
from fetal_biometry.io.sequences import SequenceError, open_sequence
from fetal_biometry.measure.sweeps import CANDIDATES, STRIDE, analyse_sequence, predicted_mask


def sweep_metrics(record: dict, predicted: np.ndarray, truth: dict, truth_mask: np.ndarray) -> dict:
    """The metrics of one sweep: ``record`` from :func:`analyse`, the predicted mask, the
    sweep's truth.json and the annotated mask of the chosen frame (zeros for -1)."""
    planes = [f["plane"] for f in truth["frames"]]
    chosen = record["best_frame"]
    values = {"wfss": wfss(chosen, planes), "nae": nae(truth["ac_mm"], record["ac_mm"]),
              "dice": dice(predicted, truth_mask)}
    values["score"] = combined(values["nae"], values["dice"], values["wfss"])
    return {"best_frame": chosen, "chosen_plane": planes[chosen] if chosen >= 0 else None,
            "chosen_reason": truth["frames"][chosen]["reason"] if chosen >= 0 else None,
            "ac_mm": record["ac_mm"], "true_ac_mm": truth["ac_mm"], **values}


def summarize(results: list[dict]) -> dict:
    """Means of the sweep metrics, how often each kind of frame was chosen, and how often a
    thorax frame (heart and lungs in plane)."""
    from fetal_biometry.simulator.sweeps import THORAX

    summary = {k: float(np.mean([r[k] for r in results])) for k in ("wfss", "nae", "dice", "score")}
    chosen = [r["chosen_plane"] or "none" for r in results]
    summary.update(sweeps=len(results), chosen={k: chosen.count(k) for k in sorted(set(chosen))},
                   thorax=sum((r.get("chosen_reason") or "").startswith(THORAX) for r in results))
    return summary


def table(summaries: dict[str, dict]) -> str:
    """The sweep metrics per model as a markdown table."""
    lines = ["| model | sweeps | WFSS | NAE | Dice | score | chosen frames (optimal / suboptimal / irrelevant / none) "
             "| thorax frames chosen |", "|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        c = s["chosen"]
        counts = " / ".join(str(c.get(k, 0)) for k in ("optimal", "suboptimal", "irrelevant", "none"))
        lines.append(f"| {name} | {s['sweeps']} | {s['wfss']:.3f} | {s['nae']:.3f} | {s['dice']:.3f} | "
                     f"{s['score']:.3f} | {counts} | {s.get('thorax', 0)} |")
    return "\n".join(lines)


def _frame(path: pathlib.Path, index: int) -> np.ndarray:
    """Frame ``index`` of a stack, streamed up to it."""
    for k, frame in enumerate(open_sequence(path).frames()):
        if k == index:
            return frame
    raise SequenceError(f"{path}: no frame {index}")


def evaluate_sweep(classifier, folder: pathlib.Path, batch: int = BATCH,
                   candidates: int = CANDIDATES, stride: int = STRIDE, **choice) -> dict:
    """Analyse one simulated sweep (the layout of :mod:`fetal_biometry.simulator.sweeps`) with
    a patch classifier or a segmenter (:func:`fetal_biometry.inference.dense.engine`) and score
    the choice with the benchmark's metrics; ``choice`` as
    :func:`fetal_biometry.measure.sweeps.analyse_sequence`'s."""
    from fetal_biometry.simulator import sweeps as sweep_simulator

    truth = sweep_simulator.read_truth(folder)
    sequence = open_sequence(folder / "frames.mha")
    probe = geom.from_dict(truth["probe"])
    frames = SequenceClassifier(classifier, probe, sequence.shape, sequence.spacing_mm, batch)
    result = analyse_sequence(frames, sequence.frames, sequence.spacing_mm, sequence.count,
                              candidates=candidates, stride=stride, **choice)
    chosen = result.record["best_frame"]
    annotated = (_frame(folder / "masks.mha", chosen) > 0 if chosen >= 0
                 else np.zeros(sequence.shape, bool))
    metrics = sweep_metrics(result.record, predicted_mask(result, sequence.shape), truth, annotated)
    return {"sweep": folder.name, **metrics, "plane_acceptable": result.record["plane_acceptable"],
            "reasons": result.record["reasons"],
            "optimal_frames": [k for k, f in enumerate(truth["frames"]) if f["plane"] == "optimal"]}


def evaluate(model, root: str | os.PathLike, out: str | os.PathLike | None = None,
             progress: Callable = lambda items, desc: items, backend: str = "caffe") -> dict:
    """Every sweep of ``root`` analysed with ``model`` (a loaded model folder); the summary,
    with the per-sweep results under ``"sweeps"`` (also OUT/NAME_sweeps.json when ``out``)."""
    from fetal_biometry import atomic
    from fetal_biometry.simulator import sweeps as sweep_simulator

    classifier = engine(model, backend=backend)
    results = [evaluate_sweep(classifier, folder)
               for folder in progress(sweep_simulator.open_sweeps(root), f"sweeps ({model.name})")]
    summary = {**summarize(results), "sweeps_detail": results}
    if out is not None:
        atomic.write_text(pathlib.Path(out) / f"{model.name}_sweeps.json", json.dumps(summary, indent=1) + "\n")
    return summary


def write_report(summaries: dict[str, dict], out: str | os.PathLike) -> str:
    """OUT/sweep_table.md and OUT/sweep_summary.json; returns the table."""
    from fetal_biometry import atomic

    text = table(summaries)
    atomic.write_text(pathlib.Path(out) / "sweep_table.md", text + "\n")
    brief = {name: {k: v for k, v in s.items() if k != "sweeps_detail"} for name, s in summaries.items()}
    atomic.write_text(pathlib.Path(out) / "sweep_summary.json", json.dumps(brief, indent=1) + "\n")
    return text
